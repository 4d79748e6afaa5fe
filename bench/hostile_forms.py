"""Does resident memory ratchet up under repeated hostile forms? And what do the two bounds
(malloc_trim when idle, fewer glibc arenas) cost in decoding throughput?

Memory: for each configuration a server of its own (wired test Whisper model, random-weight
pyannote pipeline) is warmed on every path (so models and first-use allocations are in place),
then sent R rounds of hostile forms, 16 at a time: 990 `include[]`, four 1 MB data URLs as
speaker references, four real 8 s references (decoded, VAD-checked, embedded), 900 nested
`chunking_strategy[...]` fields, a JSON-string list of 90,000 entries, and 5 MB urlencoded bodies.
Printed: RSS when warm, after each round (1 s after it), the peak, and growth over warm.

Throughput: real tiny.en, C concurrent requests of a 30 s clip, seconds of audio per wall second
with glibc's default arenas and with EARSHOT_MALLOC_ARENAS=2, servers alternating.

    .venv/bin/python bench/hostile_forms.py [--rounds 20] [--throughput-runs 3] [--clients 4]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import real_speech as rs  # noqa: E402
from tests.audio_fixtures import encode, speechlike  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.factories.pyannote_pipeline import build_pyannote_pipeline  # noqa: E402
from tests.factories.whisper_model import DEFAULT_SCRIPT, build_whisper_model  # noqa: E402

CONFIGS = {
    "glibc defaults": {"EARSHOT_MALLOC_ARENAS": "0", "EARSHOT_RELEASE_IDLE_MEMORY": "false"},
    "trim when idle": {"EARSHOT_MALLOC_ARENAS": "0", "EARSHOT_RELEASE_IDLE_MEMORY": "true"},
    "trim + 2 arenas (default)": {"EARSHOT_MALLOC_ARENAS": "2", "EARSHOT_RELEASE_IDLE_MEMORY": "true"},
}


def rss_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise KeyError("VmRSS")


def hostile_requests(client: httpx.Client, wav: bytes) -> list:
    ref = "data:audio/wav;base64," + base64.b64encode(
        encode(rs.trim(rs.hibari(rs.SENTENCES[0]))[: 16000 * 8], "wav")
    ).decode()
    junk = "data:audio/wav;base64," + "A" * 1_000_000
    names = [f"speaker{i}" for i in range(4)]

    def form(data: dict):
        return lambda: client.post("/audio/transcriptions", data=data, files={"file": ("a.wav", wav)})

    def urlencoded(text: str):
        return lambda: client.post(
            "/audio/transcriptions", content=text.encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )

    diarize = {"model": "gpt-4o-transcribe-diarize", "response_format": "diarized_json"}
    return [
        form({"model": "whisper-1", "include[]": ["logprobs"] * 990}),
        form({**diarize, "known_speaker_names[]": names, "known_speaker_references[]": [junk] * 4}),
        form({**diarize, "known_speaker_names[]": names, "known_speaker_references[]": [ref] * 4}),
        form({"model": "whisper-1", **{f"chunking_strategy[a{i}][b][c][d]": "x" * 100 for i in range(900)}}),
        form({"model": "gpt-4o-transcribe", "include": json.dumps(["logprobs"] * 90_000)}),
        urlencoded(urllib.parse.urlencode({"model": "gpt-4o-transcribe-diarize", "known_speaker_names[]": "a",
                                           "known_speaker_references[]": "data:audio/wav;base64," + "A" * 4_900_000})),
        urlencoded("model=whisper-1&" + "&".join(f"include[]={'x' * 4000}" for _ in range(1000))),
    ]


def memory_run(name: str, env: dict, model: Path, pipeline: Path, rounds: int, work: Path) -> dict:
    server = start_server(
        {"EARSHOT_ASR_MODEL": str(model), "EARSHOT_MODELS_DIR": str(work),
         "EARSHOT_DIARIZATION_MODEL": str(pipeline), **env},
        work / f"{name.split()[0]}.log",
    )
    pid = server.process.pid
    wav = encode(speechlike(3.0), "wav")
    peak, stop = [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.02)

    try:
        with httpx.Client(base_url=server.v1, timeout=300) as client:
            for data in ({"model": "whisper-1"}, {"model": "whisper-1", "chunking_strategy": "auto"},
                         {"model": "gpt-4o-transcribe-diarize", "response_format": "diarized_json"}):
                assert client.post("/audio/transcriptions", data=data, files={"file": ("a.wav", wav)}).status_code == 200
            requests = hostile_requests(client, wav)
            # One round of everything first: lazily created state (thread pools, caches) is in place.
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda send: send(), requests * 4))
            time.sleep(1)
            warm = rss_mb(pid)
            threading.Thread(target=sample, daemon=True).start()
            after = []
            for _ in range(rounds):
                with ThreadPoolExecutor(16) as pool:
                    statuses = list(pool.map(lambda send: send().status_code, requests * 4))
                assert all(s < 500 for s in statuses), statuses
                time.sleep(1)
                after.append(rss_mb(pid))
    finally:
        stop.set()
        stop_server(server)
    return {"warm": warm, "after": after, "peak": peak[0]}


def throughput_run(store: Path, arenas: str, clients: int, clip: bytes, seconds: float, work: Path) -> float:
    server = start_server(
        {"EARSHOT_ASR_MODEL": "faster-whisper-tiny.en", "EARSHOT_MODELS_DIR": str(store),
         "EARSHOT_MALLOC_ARENAS": arenas},
        work / f"tp-{arenas}.log", timeout=120,
    )
    try:
        with httpx.Client(base_url=server.v1, timeout=600) as client:
            def one(_):
                r = client.post("/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("c.wav", clip)})
                assert r.status_code == 200, r.text

            one(0)  # load
            started = time.monotonic()
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(one, range(clients * 2)))
            return clients * 2 * seconds / (time.monotonic() - started)
    finally:
        stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--throughput-runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_whisper_model(work / "wired", DEFAULT_SCRIPT)
        pipeline = build_pyannote_pipeline(work / "pipeline", seed=3)
        print(f"memory: {args.rounds} rounds of {7 * 4} hostile forms, 16 at a time (MB of RSS)")
        for name, env in CONFIGS.items():
            r = memory_run(name, env, model, pipeline, args.rounds, work)
            late = r["after"][len(r["after"]) // 2:]
            print(f"  {name:<27} warm {r['warm']:5d}  after rounds {r['after'][0]:5d} .. {r['after'][-1]:5d}"
                  f"  max after {max(r['after']):5d}  peak {r['peak']:5d}  growth {r['after'][-1] - r['warm']:+5d}"
                  f"  (second half: {late[-1] - late[0]:+d})", flush=True)
        if args.throughput_runs <= 0:
            return
        from engines.wheel_models import assemble

        store = work / "store"
        assemble("faster-whisper-tiny.en", store)
        clip = rs.long_recording().wav()
        import io
        import wave

        with wave.open(io.BytesIO(clip)) as w:
            frames = min(w.getnframes(), 30 * w.getframerate())
            seconds = frames / w.getframerate()
            rate, samples = w.getframerate(), w.readframes(frames)
        out = io.BytesIO()
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(samples)
        clip = out.getvalue()
        print(f"throughput: real tiny.en, {args.clients} clients x 2 requests of {seconds:.0f} s (audio s per wall s)")
        ratios = []
        for run in range(args.throughput_runs):
            order = ["0", "2"] if run % 2 == 0 else ["2", "0"]
            got = {a: throughput_run(store, a, args.clients, clip, seconds, work) for a in order}
            ratios.append(got["2"] / got["0"])
            print(f"  run {run + 1}: glibc default {got['0']:.1f}  2 arenas {got['2']:.1f}  ratio {ratios[-1]:.3f}",
                  flush=True)
        print(f"  2 arenas / default: median {sorted(ratios)[len(ratios) // 2]:.3f}, range {min(ratios):.3f}-{max(ratios):.3f}")


if __name__ == "__main__":
    main()
