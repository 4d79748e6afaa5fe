"""VAD-chunked, batched decoding ÷ Whisper's standard sequential windows, at equal token counts.

The input is long speech (espeak-ng sentences from tests/assets/speech) laid out in 30 s blocks,
each a paragraph of at most 28 s with pauses around it, so the VAD makes exactly one chunk per
30 s window and both paths decode the same number of windows. The model is a random-weight Whisper of a real
architecture (compute does not depend on weight values) wired to say the same script in every
window, so both paths emit the same tokens; the script checks the token counts are equal.

Each measurement runs in a fresh process (so its peak memory is its own), modes alternate round
by round so machine noise hits all alike, and the ratio is taken per round. Reported: wall-clock
and CPU time per mode, tokens, peak RSS (and peak GPU memory on CUDA), and the speed-up of each
batched mode over the sequential path.

    .venv/bin/python bench/vad_batching.py [--dims tiny] [--minutes 10] [--runs 3] [--batch-sizes 1,4,8]
    .venv/bin/python bench/vad_batching.py --device cuda --dims large-v3 --batch-sizes 1,8,16,32
    # memory stays bounded on long input (cheap model, chunked path only):
    .venv/bin/python bench/vad_batching.py --dims test --minutes 120 --runs 1 --batch-sizes 8 --no-sequential
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from tests.factories import whisper_model as factory  # noqa: E402

DIMS = {
    "test": factory.TEST_DIMS,
    "tiny": factory.TINY_DIMS,
    "base": factory.BASE_DIMS,
    "small": factory.SMALL_DIMS,
    "medium": factory.MEDIUM_DIMS,
    "large-v3": factory.LARGE_V3_DIMS,
    "large-v3-turbo": factory.LARGE_V3_TURBO_DIMS,
}
BLOCK_SECONDS = 30.0
PARAGRAPH_SECONDS = 28.0  # with the VAD's padding still within one 30 s chunk
SENTENCE_GAP = 0.12  # shorter than the default 200 ms silence: a paragraph stays one region


def long_speech(minutes: float) -> np.ndarray:
    """`minutes` of 30 s blocks: a paragraph of sentences (at most 28 s) with pauses around it."""
    from tests.speech_clips import clips, compose

    speech = clips()
    layout: list = []
    k = 0
    for _ in range(round(minutes * 60 / BLOCK_SECONDS)):
        paragraph: list = []
        used = 0.0
        while used + len(speech[k % len(speech)]) / 16000 <= PARAGRAPH_SECONDS:
            clip = speech[k % len(speech)]
            paragraph += [clip, SENTENCE_GAP]
            used += len(clip) / 16000 + SENTENCE_GAP
            k += 1
        pause = (BLOCK_SECONDS - used) / 2
        layout += [pause, *paragraph[:-1], pause + SENTENCE_GAP]
    return compose(layout).audio


class _GpuPeak:
    """Highest GPU memory in use while running (nvidia-smi, polled), in MiB; None without a GPU."""

    def __init__(self, device_index: int) -> None:
        self.index = device_index
        self.peak: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", f"--id={self.index}", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5,
                ).stdout.strip()
                self.peak = max(self.peak or 0, int(out.splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def child(args) -> None:
    """One measurement: load, warm up, decode the whole input once, print a JSON line."""
    from engines.base import Chunking, TranscribeOptions
    from engines.whisper import WhisperEngine

    audio = np.load(args.audio)
    engine = WhisperEngine(
        Path(args.model), device=args.device, compute_type=args.compute_type, batch_size=max(args.mode_batch, 1)
    )
    chunked = args.mode_batch > 0
    options = TranscribeOptions(language="en", chunking=Chunking() if chunked else None)
    list(engine.transcribe(audio[: 30 * 16000], options).segments)  # allocators, kernels, VAD model
    with _GpuPeak(0) if args.device == "cuda" else _NullPeak() as gpu:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        segments = list(engine.transcribe(audio, options).segments)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(json.dumps({
        "audio_mib": audio.nbytes / 2**20,
        "wall": wall,
        "cpu": cpu,
        "tokens": sum(len(s.tokens) for s in segments),
        "segments": len(segments),
        "text_hash": hash("".join(s.text for s in segments)),
        "peak_rss_mib": peak_rss_mib(),
        "peak_gpu_mib": gpu.peak,
    }))


def peak_rss_mib() -> float:
    """This process's peak resident memory. Linux's VmHWM belongs to the address space, which exec
    replaces; ru_maxrss would carry over the parent's peak from before the exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _NullPeak:
    peak = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def measure(mode_batch: int, model_dir: Path, audio_path: Path, args) -> dict:
    cmd = [
        sys.executable, __file__, "--child", "--audio", str(audio_path), "--model", str(model_dir),
        "--mode-batch", str(mode_batch), "--device", args.device, "--compute-type", args.compute_type,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def name(mode_batch: int) -> str:
    return "sequential (no chunking)" if mode_batch == 0 else f"VAD chunks, batch {mode_batch}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", choices=sorted(DIMS), default="tiny")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-sizes", default="1,4,8", help="batched modes to compare with sequential")
    parser.add_argument("--no-sequential", action="store_true", help="only the chunked modes (memory checks)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--compute-type", default=None, help="default: int8 on CPU, float16 on CUDA")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--audio", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--mode-batch", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.compute_type = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    if args.child:
        child(args)
        return

    # About 80 tokens per window (8 segments of 8 words), like real speech at a normal pace.
    script = factory.long_script(8, 8, 3.0)
    modes = ([] if args.no_sequential else [0]) + [int(b) for b in args.batch_sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        started = time.perf_counter()
        model_dir = factory.build_whisper_model(
            tmp / f"wired-{args.dims}", script, dims=DIMS[args.dims],
            quantization="float16" if args.device == "cuda" else None,
        )
        audio = long_speech(args.minutes)
        audio_path = tmp / "speech.npy"
        np.save(audio_path, audio)
        print(f"built the {args.dims} model and {len(audio) / 16000 / 60:.1f} min of speech "
              f"in {time.perf_counter() - started:.0f} s", flush=True)
        results: dict[int, list[dict]] = {m: [] for m in modes}
        for r in range(args.runs):
            order = modes if r % 2 == 0 else modes[::-1]
            for m in order:
                results[m].append(measure(m, model_dir, audio_path, args))
                print(f"  run {r + 1} {name(m)}: {results[m][-1]['wall']:.1f} s", flush=True)

    seq = results.get(0)
    print(f"\nmodel: wired random-weight Whisper '{args.dims}' ({args.compute_type}, {args.device}), "
          f"{len(audio) / 16000 / 60:.1f} min of speech, {args.runs} rounds (fresh process per run)")
    print(f"{'mode':<28}{'tokens':>8}{'wall s':>9}{'cpu s':>9}{'tok/s':>8}{'peak RSS MiB':>14}{'peak GPU MiB':>14}"
          f"{'speed-up (wall)':>18}{'(cpu)':>8}")
    for m in modes:
        runs = results[m]
        tokens = {x["tokens"] for x in runs}
        wall = statistics.median(x["wall"] for x in runs)
        cpu = statistics.median(x["cpu"] for x in runs)
        rss = max(x["peak_rss_mib"] for x in runs)
        gpu = max((x["peak_gpu_mib"] or 0) for x in runs) or None
        # Per round, at equal tokens: time per token of sequential ÷ time per token of this mode.
        ratios = [(s["wall"] / s["tokens"]) / (x["wall"] / x["tokens"]) for s, x in zip(seq or [], runs)]
        cpu_ratios = [(s["cpu"] / s["tokens"]) / (x["cpu"] / x["tokens"]) for s, x in zip(seq or [], runs)]
        spread = f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "-"
        cpu_spread = f"{statistics.median(cpu_ratios):.2f}×" if cpu_ratios else "-"
        print(f"{name(m):<28}{'/'.join(map(str, sorted(tokens))):>8}{wall:>9.1f}{cpu:>9.1f}"
              f"{runs[0]['tokens'] / wall:>8.1f}{rss:>14.0f}{gpu if gpu else '-':>14}{spread:>18}{cpu_spread:>8}")
    audio_mib = results[modes[0]][0]["audio_mib"]
    print(f"(the decoded input itself is {audio_mib:.0f} MiB of each process's RSS)")
    if len({x["tokens"] for m in modes for x in results[m]}) != 1:
        print("WARNING: token counts differ between modes; the speed-ups above are per token")


if __name__ == "__main__":
    main()
