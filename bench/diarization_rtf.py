"""Diarization real-time factor: seconds of pyannote pipeline time per second of audio.

Runs `PyannoteDiarizer.diarize` (the engine the server uses: in-memory waveform, exclusive turns,
per-speaker embeddings) on a two-speaker meeting made of the test voices (tests/voices.py),
repeated to `--seconds`. Pipelines are random-weight folders in community-1's layout
(tests/factories/pyannote_pipeline.py): `community-1` has its real sizes and clustering, so its
cost is the real pipeline's (weights do not change the work done: every chunk and local speaker
is embedded whatever the segmentation says); `test` is the suite's cut-down configuration.
One warm-up run first (PyTorch builds its kernels on first use), then `--runs` timed runs;
prints each configuration's median RTF (wall clock) and its range, the CPU seconds the process
spent per audio second (all threads; less sensitive to other load on a shared machine), and the
load average.

    .venv/bin/python bench/diarization_rtf.py [--sizes community-1 test] [--seconds 60] [--runs 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import voices  # noqa: E402
from tests.factories import pyannote_pipeline as factory  # noqa: E402

SIZES = {"community-1": factory.COMMUNITY_1, "test": factory.TEST_SIZES}


def two_speaker_audio(seconds: float) -> np.ndarray:
    one = voices.meeting().audio
    pause = np.zeros(8000, dtype=np.float32)
    reps = int(np.ceil(seconds * 16000 / (len(one) + len(pause))))
    return np.concatenate([np.concatenate([one, pause])] * reps)[: int(seconds * 16000)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", choices=sorted(SIZES), default=["community-1", "test"])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from engines.diarization import PyannoteDiarizer

    audio = two_speaker_audio(args.seconds)
    print(f"audio: {len(audio) / 16000:.1f} s two-speaker meeting; device {args.device}; torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sizes:
            folder = factory.build_pyannote_pipeline(Path(tmp) / name, SIZES[name])
            engine = PyannoteDiarizer(folder, device=args.device)
            engine.diarize(audio[: 15 * 16000])
            seconds = len(audio) / 16000
            ratios, cpu = [], []
            for _ in range(args.runs):
                started, cpu_started = time.perf_counter(), time.process_time()
                result = engine.diarize(audio)
                ratios.append((time.perf_counter() - started) / seconds)
                cpu.append((time.process_time() - cpu_started) / seconds)
            engine.close()
            speakers = len({t.speaker for t in result.turns})
            print(
                f"{name:12s} RTF median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}, "
                f"{args.runs} runs; {len(result.turns)} turns, {speakers} speakers); "
                f"CPU seconds per audio second {statistics.median(cpu):.2f}; load average {os.getloadavg()[0]:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
