"""One watched run of `earshot serve`: every response format through a server under the network guard.

`run()` starts the server with tests/net_guard on its PYTHONPATH (every network attempt is logged
and refused), sends a transcription in every response format, a translation in every format, a
stream, and requests for models that are not on the host, stops the server, and returns what
came back plus the guard's log. tests/test_offline.py calls it directly, and also as

    unshare -n python -m tests.offline_session CONFIG.json

so that the same run happens inside a network namespace whose only interface is loopback; there
the report is printed as JSON.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import struct
import sys
from pathlib import Path

import httpx

from tests.audio_fixtures import wav_bytes
from tests.conftest import ROOT, start_server, stop_server

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


def run(model_dir: Path, work: Path, extra_env: dict[str, str] | None = None, every_format: bool = True) -> dict:
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
        "PYTHONPATH": os.pathsep.join(p for p in (str(GUARD_DIR), os.environ.get("PYTHONPATH")) if p),
        **(extra_env or {}),
    }
    wav = wav_bytes(4.0)
    answers: dict[str, dict] = {}
    server = start_server(env, work / "server.log")
    try:
        with httpx.Client(base_url=server.base_url, timeout=60, trust_env=False) as http:

            def post(path: str, data: dict) -> httpx.Response:
                return http.post(f"/v1/audio/{path}", data=data, files={"file": ("a.wav", wav, "audio/x-wav")})

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
    finally:
        stop_server(server)
    return {
        "answers": answers,
        "guard": [json.loads(line) for line in guard_log.read_text().splitlines()],
        "server_log": server.log(),
    }


if __name__ == "__main__":
    config = json.loads(Path(sys.argv[1]).read_text())
    interfaces = loopback_up()
    report = run(Path(config["model_dir"]), Path(config["work"]), config.get("env"))
    report["interfaces"] = interfaces
    report["netns"] = os.readlink("/proc/self/ns/net")
    print(json.dumps(report))
