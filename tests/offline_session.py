"""One watched run of `earshot serve`: every response format through a server under the network guard.

`run()` starts the server with tests/net_guard on its PYTHONPATH (every Python-level network
attempt is logged and refused) and, with `trace`, under strace (every connect/send of every
thread and child process, native libraries included: tests/syscall_trace.py). With `chunked` it
first sends chunked requests (`auto`, `server_vad`) and, with a diarization model, a diarized one
with known speakers and a streamed one; then a transcription in every response format, a
translation in every format, a stream, and requests for models that are not on the host. It
stops the server and returns what came back, the guard's log and the trace's outbound attempts.
tests/test_offline.py calls it directly, and also as

    unshare -n python -m tests.offline_session CONFIG.json

so that the same run happens inside a network namespace whose only interface is loopback; there
the report is printed as JSON.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.audio_fixtures import wav_bytes
from tests.conftest import ROOT, start_server, stop_server
from tests.syscall_trace import CI_MARKERS, TRACE_ARGS, outbound

GUARD_DIR = ROOT / "tests" / "net_guard"
FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
MISSING_MODEL = "faster-whisper-nowhere"
UNCACHED_REPO = "Systran/faster-whisper-tiny"
REGISTRY = f"""
[models."missing-model"]
model = "{MISSING_MODEL}"
profile = "native"

[models."hub-model"]
model = "{UNCACHED_REPO}"
profile = "native"
"""


def loopback_up() -> list[str]:
    """Bring `lo` up in a fresh network namespace (it starts down); returns the interfaces there."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, siocgifflags, request))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
    return [name for _, name in socket.if_nameindex()]


def _answer(resp: httpx.Response) -> dict:
    return {"status": resp.status_code, "content_type": resp.headers.get("content-type"), "body": resp.text}


def _references() -> tuple[list[str], list[str]]:
    from tests import voices
    from tests.audio_fixtures import encode

    clips = {"Ann": voices.clip("low-1"), "Bo": voices.clip("high-1")}
    urls = ["data:audio/wav;base64," + base64.b64encode(encode(c, "wav")).decode() for c in clips.values()]
    return list(clips), urls


def _stop(server, traced: bool) -> None:
    if not traced:
        stop_server(server)
        return
    # strace passes no signal on: stop the server it runs, and strace ends with it.
    strace = server.process.pid
    for child in Path(f"/proc/{strace}/task/{strace}/children").read_text().split():
        os.kill(int(child), signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise


def run(
    model_dir: Path,
    work: Path,
    extra_env: dict[str, str] | None = None,
    every_format: bool = True,
    *,
    chunked: bool = False,
    diarization_dir: Path | None = None,
    trace: bool = False,
    site_dir: Path | None = GUARD_DIR,
    linger: float = 0.0,
) -> dict:
    """`site_dir`: a folder of a sitecustomize for the server (None: none). The Python guard's audit
    hook doubles the time torch and pyannote take to import; a traced run sees more without it.
    `linger`: seconds the server runs on after the last request that ran the VAD (onnxruntime) or
    diarization (onnxruntime's telemetry, when on, sends its first batch about 8 s after the first
    VAD run). Those requests go first; the plain transcriptions, which run neither, follow while
    that time runs, and the server waits out what is left of it after the last answer."""
    work.mkdir(parents=True, exist_ok=True)
    store = work / "store"
    store.mkdir(exist_ok=True)
    (store / "registry.toml").write_text(REGISTRY)
    guard_log = work / "net-guard.log"
    guard_log.write_text("")
    env = {
        "EARSHOT_ASR_MODEL": str(model_dir),
        "EARSHOT_MODELS_DIR": str(store),
        "EARSHOT_NET_GUARD_LOG": str(guard_log),
        "PYTHONPATH": os.pathsep.join(p for p in (site_dir and str(site_dir), os.environ.get("PYTHONPATH")) if p),
        **({"EARSHOT_DIARIZATION_MODEL": str(diarization_dir)} if diarization_dir else {}),
        **(extra_env or {}),
    }
    wav = wav_bytes(4.0)
    answers: dict[str, dict] = {}
    trace_file = work / "syscalls.trace"
    prefix = ("strace", *TRACE_ARGS, "-o", str(trace_file)) if trace else ()
    server = start_server(env, work / "server.log", timeout=120, prefix=prefix, unset=CI_MARKERS if trace else ())
    try:
        with httpx.Client(base_url=server.base_url, timeout=300, trust_env=False) as http:

            def post(path: str, data: dict) -> httpx.Response:
                return http.post(f"/v1/audio/{path}", data=data, files={"file": ("a.wav", wav, "audio/x-wav")})

            if chunked:
                speech = wav_of_meeting()
                requests = {
                    "chunked/auto": {"model": "whisper-1", "chunking_strategy": "auto"},
                    "chunked/server_vad": {"model": "whisper-1", "response_format": "verbose_json",
                                           "chunking_strategy": json.dumps({"type": "server_vad"})},
                }
                if diarization_dir is not None:
                    # Between them the two run all of the diarization engine (turns with the
                    # speakers' embeddings and the references', and turns alone) and both ways of
                    # answering (JSON and a stream); a plain diarized JSON request adds nothing.
                    names, urls = _references()
                    diarize = {"model": "gpt-4o-transcribe-diarize", "response_format": "diarized_json",
                               "chunking_strategy": "auto"}
                    requests |= {
                        "diarized/known": {**diarize, "known_speaker_names[]": names,
                                           "known_speaker_references[]": urls},
                        "diarized/stream": {**diarize, "stream": "true"},
                    }
                for key, data in requests.items():
                    answers[key] = _answer(
                        http.post("/v1/audio/transcriptions", data=data, files={"file": ("m.wav", speech, "audio/x-wav")})
                    )
            # The last request that ran the VAD or diarization is answered: `linger` counts from here.
            lingering_since = time.monotonic()
            for fmt in FORMATS if every_format else ():
                data = {"model": "whisper-1", "response_format": fmt}
                if fmt == "verbose_json":
                    data["timestamp_granularities[]"] = ["word", "segment"]
                answers[f"transcriptions/{fmt}"] = _answer(post("transcriptions", data))
                answers[f"translations/{fmt}"] = _answer(
                    post("translations", {"model": "whisper-1", "response_format": fmt})
                )
            if every_format:
                answers["transcriptions/stream"] = _answer(
                    post("transcriptions", {"model": "gpt-4o-transcribe", "stream": "true", "include[]": "logprobs"})
                )
                answers["missing-model"] = _answer(post("transcriptions", {"model": "missing-model"}))
                answers["models"] = _answer(http.get("/v1/models"))
            answers["hub-model"] = _answer(post("transcriptions", {"model": "hub-model"}))
        time.sleep(max(0.0, linger - (time.monotonic() - lingering_since)))
    finally:
        _stop(server, trace)
    return {
        "answers": answers,
        "guard": [json.loads(line) for line in guard_log.read_text().splitlines()] if site_dir == GUARD_DIR else None,
        "server_log": server.log(),
        **({"outbound": outbound(trace_file.read_text()), "trace_lines": len(trace_file.read_text().splitlines())}
           if trace else {}),
    }


def wav_of_meeting() -> bytes:
    from tests import voices
    from tests.audio_fixtures import encode

    return encode(voices.meeting().audio, "wav")


if __name__ == "__main__":
    config = json.loads(Path(sys.argv[1]).read_text())
    interfaces = loopback_up()
    report = run(
        Path(config["model_dir"]),
        Path(config["work"]),
        config.get("env"),
        config.get("every_format", True),
        chunked=config.get("chunked", False),
        diarization_dir=Path(config["diarization_dir"]) if config.get("diarization_dir") else None,
        trace=config.get("trace", False),
        site_dir=Path(config.get("site_dir", GUARD_DIR)) if config.get("site_dir", GUARD_DIR) else None,
        linger=config.get("linger", 0.0),
    )
    report["interfaces"] = interfaces
    report["netns"] = os.readlink("/proc/self/ns/net")
    print(json.dumps(report))
