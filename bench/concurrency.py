"""Throughput under concurrent clients, with and without cross-request batching, side by side.

Two servers on the same wired random-weight model of a real Whisper architecture (compute cost
does not depend on weight values), one with EARSHOT_CROSS_REQUEST_BATCHING on and one off; for
each client count the two are measured back to back, alternating which goes first. Each client
sends short speech clips with chunking_strategy=auto (one VAD chunk each: the case only
cross-request batching can speed up). Throughput = seconds of audio transcribed per wall second.

    .venv/bin/python bench/concurrency.py [--dims tiny] [--clients 1,2,4,8] [--requests 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.audio_fixtures import encode  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.factories import whisper_model as factory  # noqa: E402
from tests.speech_clips import clip  # noqa: E402

DIMS = {"test": factory.TEST_DIMS, "tiny": factory.TINY_DIMS, "base": factory.BASE_DIMS}


def run(base: str, wav: bytes, clients: int, requests: int) -> float:
    def client() -> None:
        with httpx.Client(base_url=base, timeout=600) as http:
            for _ in range(requests):
                resp = http.post(
                    "/v1/audio/transcriptions",
                    data={"model": "whisper-1", "chunking_strategy": "auto"},
                    files={"file": ("clip.wav", wav, "audio/wav")},
                )
                resp.raise_for_status()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", choices=sorted(DIMS), default="tiny")
    parser.add_argument("--clients", default="1,2,4,8")
    parser.add_argument("--requests", type=int, default=4, help="requests per client")
    parser.add_argument("--wait-ms", type=float, default=10.0, help="EARSHOT_BATCH_WAIT_MS of the batched server")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]

    speech = clip("fox")
    seconds = len(speech) / 16000
    wav = encode(speech, "wav")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = factory.build_whisper_model(tmp / f"wired-{args.dims}", dims=DIMS[args.dims])
        common = {"EARSHOT_ASR_MODEL": str(model_dir), "EARSHOT_MODELS_DIR": str(tmp), "EARSHOT_LOG_LEVEL": "warning",
                  "EARSHOT_BATCH_SIZE": str(max(counts)), "EARSHOT_MAX_CONCURRENT": str(max(counts))}
        servers = {
            mode: start_server({**common, "EARSHOT_CROSS_REQUEST_BATCHING": str(mode == "batched").lower(),
                                "EARSHOT_BATCH_WAIT_MS": str(args.wait_ms)}, tmp / f"{mode}.log")
            for mode in ("batched", "unbatched")
        }
        try:
            for server in servers.values():
                run(server.base_url, wav, 1, 1)  # warm-up: model load
            print(f"model: wired random-weight Whisper '{args.dims}' (int8, CPU); clip {seconds:.1f} s of speech, "
                  f"chunking_strategy=auto, {args.requests} requests per client, batch wait {args.wait_ms:g} ms")
            print("clients  batched (audio s/s)  unbatched (audio s/s)  ratio")
            for i, n in enumerate(counts):
                order = ("batched", "unbatched") if i % 2 == 0 else ("unbatched", "batched")
                wall = {mode: run(servers[mode].base_url, wav, n, args.requests) for mode in order}
                rate = {mode: n * args.requests * seconds / wall[mode] for mode in wall}
                print(f"{n:>7}  {rate['batched']:>19.2f}  {rate['unbatched']:>21.2f}  "
                      f"{rate['batched'] / rate['unbatched']:.2f}x")
        finally:
            for server in servers.values():
                stop_server(server)


if __name__ == "__main__":
    main()
