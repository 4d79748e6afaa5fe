"""Server overhead: end-to-end latency through Earshot ÷ a direct faster-whisper call.

Both sides use the same CTranslate2 model (random weights of a real Whisper architecture, wired
to emit a fixed transcript), the same audio file and the same decoding options; runs alternate so
machine noise hits both alike. Prints the per-pair ratio's median and range.

    .venv/bin/python bench/server_overhead.py [--dims tiny|base|small] [--seconds 10] [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.audio_fixtures import encode, speechlike  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.factories import whisper_model as factory  # noqa: E402

DIMS = {"test": factory.TEST_DIMS, "tiny": factory.TINY_DIMS, "base": factory.BASE_DIMS, "small": factory.SMALL_DIMS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", choices=sorted(DIMS), default="tiny")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--compute-type", default="int8")
    args = parser.parse_args()

    from faster_whisper import WhisperModel

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = factory.build_whisper_model(tmp / f"wired-{args.dims}", dims=DIMS[args.dims])
        audio_path = tmp / "clip.wav"
        audio_path.write_bytes(encode(speechlike(args.seconds), "wav"))
        model = WhisperModel(str(model_dir), device="cpu", compute_type=args.compute_type)
        server = start_server(
            {"EARSHOT_ASR_MODEL": str(model_dir), "EARSHOT_MODELS_DIR": str(tmp), "EARSHOT_COMPUTE_TYPE": args.compute_type,
             "EARSHOT_LOG_LEVEL": "warning"},
            tmp / "server.log",
        )
        try:
            client = httpx.Client(base_url=server.base_url, timeout=300)

            def direct() -> str:
                segments, _ = model.transcribe(str(audio_path), vad_filter=False)
                return "".join(s.text for s in segments).strip()

            def served() -> str:
                with open(audio_path, "rb") as f:
                    resp = client.post(
                        "/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("clip.wav", f, "audio/wav")}
                    )
                resp.raise_for_status()
                return resp.json()["text"]

            assert direct() == served(), "server and direct call disagree"  # also warms both up
            ratios, d_times, s_times = [], [], []
            for i in range(args.runs):
                order = (direct, served) if i % 2 == 0 else (served, direct)
                timing = {}
                for fn in order:
                    t0 = time.perf_counter()
                    fn()
                    timing[fn.__name__] = time.perf_counter() - t0
                d_times.append(timing["direct"])
                s_times.append(timing["served"])
                ratios.append(timing["served"] / timing["direct"])
        finally:
            stop_server(server)

    print(f"model: wired random-weight Whisper '{args.dims}' ({args.compute_type}, CPU), audio {args.seconds:.0f} s, "
          f"{args.runs} interleaved pairs")
    print(f"direct faster-whisper: median {statistics.median(d_times) * 1000:.1f} ms")
    print(f"through Earshot:       median {statistics.median(s_times) * 1000:.1f} ms")
    print(f"overhead ratio server/direct: median {statistics.median(ratios):.3f} "
          f"(range {min(ratios):.3f} – {max(ratios):.3f})")


if __name__ == "__main__":
    main()
