"""Peak resident memory of the server under a flood of concurrent 25 MB uploads.

Starts `earshot serve` on a test-built model (random weights of a real Whisper architecture, wired
to emit a fixed transcript), then for each kind of upload and each flood size N sends N uploads at
once and measures the server process: its high-water mark (VmHWM, reset through
/proc/<pid>/clear_refs before each flood) and VmRSS sampled every 20 ms. Figures are growth over
the idle server, side by side for N = 1 and larger floods, and against the decoded audio per
request (16 kHz float32: 64 kB per second).

Kinds of upload:
  wav       25 MB of 16 kHz 16-bit mono speech-like audio (13.6 min), transcribed by the model
  silence   a 2-hour FLAC of digital silence (77 kB): decoded in full (460 MB), the model is skipped
  bomb      a 6-hour FLAC of digital silence (230 kB): decoding stops at the 2-hour cap, 400
  garbage   25 MB that is not audio: spooled to disk, refused by the decoder

    .venv/bin/python bench/upload_flood.py [--kinds wav,silence,bomb,garbage] [--floods 1,4,8]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.audio_fixtures import encode, speechlike  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.factories import whisper_model as factory  # noqa: E402
from tests.hostile_audio import flac_constant  # noqa: E402

UPLOAD_BYTES = 25_000_000
DECODED_PER_SECOND = 16000 * 4
MB = 1 << 20


def uploads() -> dict[str, tuple[str, bytes, float]]:
    """kind -> (filename, bytes, seconds of audio the server decodes from it)."""
    wav_seconds = (UPLOAD_BYTES - 44) / 32000
    return {
        "wav": ("flood.wav", encode(speechlike(wav_seconds), "wav"), wav_seconds),
        "silence": ("silence.flac", flac_constant(7100), 7100.0),
        "bomb": ("bomb.flac", flac_constant(6 * 3600), 7200.0),
        "garbage": ("garbage.wav", bytes(range(256)) * (UPLOAD_BYTES // 256), 0.0),
    }


class Memory:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()

    def status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def reset(self) -> int:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return self.status("VmRSS")

    def __enter__(self) -> Memory:
        self.samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.status("VmRSS"))
            time.sleep(0.02)


def flood(base_url: str, filename: str, data: bytes, n: int) -> list[int]:
    statuses: list[int] = []
    barrier = threading.Barrier(n)

    def send() -> None:
        with httpx.Client(base_url=base_url, timeout=1800) as client:
            barrier.wait()
            resp = client.post(
                "/v1/audio/transcriptions",
                data={"model": "whisper-1"},
                files={"file": (filename, data, "application/octet-stream")},
            )
            statuses.append(resp.status_code)

    threads = [threading.Thread(target=send) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="wav,silence,bomb,garbage")
    parser.add_argument("--floods", default="1,4,8", help="concurrent uploads per flood (comma list)")
    parser.add_argument("--max-concurrent", type=int, default=8, help="EARSHOT_MAX_CONCURRENT of the server")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "upload_flood.json")
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    floods = [int(n) for n in args.floods.split(",")]
    made = uploads()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = factory.build_whisper_model(tmp / "wired")
        server = start_server(
            {"EARSHOT_ASR_MODEL": str(model_dir), "EARSHOT_MODELS_DIR": str(tmp), "EARSHOT_LOG_LEVEL": "warning",
             "EARSHOT_MAX_CONCURRENT": str(args.max_concurrent), "EARSHOT_MAX_QUEUE": "256"},
            tmp / "server.log",
        )
        results = []
        try:
            memory = Memory(server.process.pid)
            # Warm-up: the model loads and the worker threads exist before anything is measured.
            flood(server.base_url, "warm.wav", encode(speechlike(5.0), "wav"), 2)
            print(f"{'kind':8} {'N':>3} {'statuses':14} {'idle MB':>8} {'peak MB':>8} {'growth MB':>10} "
                  f"{'per upload':>10} {'decoded/upload':>14} {'growth÷decoded':>14} {'vs N=1':>7} {'secs':>6}")
            for kind in kinds:
                filename, data, seconds = made[kind]
                decoded = seconds * DECODED_PER_SECOND
                single = None
                for n in floods:
                    idle = memory.reset()
                    started = time.perf_counter()
                    with memory:
                        statuses = flood(server.base_url, filename, data, n)
                    elapsed = time.perf_counter() - started
                    peak = max(memory.status("VmHWM"), *memory.samples)
                    growth = peak - idle
                    single = growth if n == floods[0] else single
                    row = {
                        "kind": kind, "n": n, "upload_bytes": len(data), "statuses": sorted(statuses),
                        "idle_rss": idle, "peak_rss": peak, "growth": growth, "decoded_per_upload": decoded,
                        "seconds": elapsed,
                    }
                    results.append(row)
                    per_decoded = f"{growth / (n * decoded):.2f}" if decoded else "-"
                    print(f"{kind:8} {n:>3} {','.join(map(str, sorted(set(statuses)))):14} {idle / MB:>8.0f} "
                          f"{peak / MB:>8.0f} {growth / MB:>10.0f} {growth / n / MB:>10.0f} {decoded / MB:>14.0f} "
                          f"{per_decoded:>14} {growth / single if single else 0:>7.2f} {elapsed:>6.1f}", flush=True)
        finally:
            stop_server(server)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
