"""Real Whisper weights: word error rate and speed of Earshot's paths beside plain faster-whisper.

The audio is tests/real_speech.py's `long_recording()`: a 5.2-minute story read by hibari's
neural voice with natural pauses, so the true transcript is known. The models are the real
Systran conversions that installed wheels carry (engines/wheel_models.py): faster-whisper-tiny.en
and faster-whisper-base. Per model, one WhisperModel is loaded and shared by every in-process path
(same device, compute type and threads, so the comparison is fair); the HTTP row is a separate
`earshot serve` process with the same settings. Every path decodes the same input: the 16-bit WAV
the HTTP row uploads, decoded as the server does. After a short warm-up each path runs once.

Paths:
  fw sequential     WhisperModel.transcribe(samples), faster-whisper's defaults (the reference)
  fw batched        BatchedInferencePipeline(model).transcribe(samples, batch_size=B)
  earshot none      WhisperEngine.transcribe(samples, TranscribeOptions())
  earshot auto      chunking_strategy "auto": Chunking(normalise_loudness=True), B chunks a batch
  earshot server_vad  chunking_strategy {"type": "server_vad"} with OpenAI's defaults, B a batch
  http none         POST /v1/audio/transcriptions (WAV upload, response_format=text)

How to read it: "x fw seq" is the path's seconds over the reference's on the same model and
machine; absolute seconds and RTF (processing seconds / audio seconds) vary with the hardware,
the ratios much less, unless other work shares the machine (the closing load average says).
The HTTP row is also given over "earshot none": the server's overhead on the same transcript.

    uv run python bench/real_models.py [--models faster-whisper-tiny.en,faster-whisper-base]
        [--device auto] [--compute-type auto] [--batch-size 4 | 8,16,32] [--cpu-threads 0]
        [--skip-http] [--store DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.audio import decode  # noqa: E402
from engines import wheel_models  # noqa: E402
from engines.base import Chunking, TranscribeOptions  # noqa: E402
from engines.whisper import DEFAULT_BATCH_SIZE, WhisperEngine, pick_compute_type, pick_device  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402
from tests.real_speech import RATE, long_recording, word_error_rate  # noqa: E402

# app/protocol.py: `auto` normalises loudness; `server_vad` without fields takes ServerVad's
# defaults (threshold 0.5, 300 ms padding, 200 ms silence), which are Chunking's own defaults.
AUTO = Chunking(normalise_loudness=True)
SERVER_VAD = Chunking()
WARMUP_SECONDS = 10


def timed(fn) -> tuple[str, float]:
    t0 = time.perf_counter()
    text = fn()
    return text.strip(), time.perf_counter() - t0


def bench_model(name: str, args, clip, wav: bytes, batch_sizes: list[int]) -> list[dict]:
    model_dir = wheel_models.assemble(name, args.store)
    # The engine's batcher caps merged calls at its batch size, but never splits one call: built
    # with the largest size, `engine.batch_size` can then be lowered per sweep row.
    engine = WhisperEngine(
        model_dir, device=args.device, compute_type=args.compute_type, cpu_threads=args.cpu_threads,
        batch_size=max(batch_sizes),
    )
    # The very WhisperModel the engine loaded (the engine works on shallow copies of it), so the
    # direct paths cannot differ from Earshot's in device, compute type or threads.
    model = engine._model
    from faster_whisper import BatchedInferencePipeline

    pipeline = BatchedInferencePipeline(model)

    def fw_sequential(samples=clip.samples) -> str:
        segments, _ = model.transcribe(samples)
        return "".join(s.text for s in segments)

    def fw_batched(b: int, samples=clip.samples) -> str:
        segments, _ = pipeline.transcribe(samples, batch_size=b)
        return "".join(s.text for s in segments)

    def earshot(chunking: Chunking | None, b: int | None = None, samples=clip.samples) -> str:
        if b is not None:
            engine.batch_size = b
        result = engine.transcribe(samples, TranscribeOptions(chunking=chunking))
        return "".join(seg.text for seg in result.segments)

    # Warm-up on a short piece: first-call costs (CTranslate2's allocator and thread pools, the
    # lazily loaded VAD models of both libraries) stay out of the timed rows.
    head = clip.samples[: WARMUP_SECONDS * RATE]
    fw_sequential(head), fw_batched(batch_sizes[0], head), earshot(AUTO, batch_sizes[0], head)
    runs: list[tuple[str, int | None, object]] = [("fw sequential", None, fw_sequential)]
    runs += [("fw batched", b, lambda b=b: fw_batched(b)) for b in batch_sizes]
    runs.append(("earshot none", None, lambda: earshot(None)))
    runs += [("earshot auto", b, lambda b=b: earshot(AUTO, b)) for b in batch_sizes]
    runs += [("earshot server_vad", b, lambda b=b: earshot(SERVER_VAD, b)) for b in batch_sizes]

    rows = []
    for path, b, fn in runs:
        text, seconds = timed(fn)
        rows.append(row(name, path, b, clip, text, seconds))
        print(f"  {path:<20} B={b or '-':<3} {seconds:7.1f} s  WER {rows[-1]['wer_pct']:.2f} %", flush=True)
    engine.close()

    if not args.skip_http:
        text, seconds = served(model_dir, args, clip, wav)
        rows.append(row(name, "http none", None, clip, text, seconds))
        print(f"  {'http none':<20} B=-   {seconds:7.1f} s  WER {rows[-1]['wer_pct']:.2f} %", flush=True)

    base = rows[0]["seconds"]
    engine_none = next(r["seconds"] for r in rows if r["path"] == "earshot none")
    for r in rows:
        r["x_fw_sequential"] = round(r["seconds"] / base, 3)
        if r["path"] == "http none":
            r["x_earshot_none"] = round(r["seconds"] / engine_none, 3)
    return rows


def served(model_dir: Path, args, clip, wav: bytes) -> tuple[str, float]:
    """The recording through a live `earshot serve` with the same model settings."""
    env = {
        "EARSHOT_ASR_MODEL": str(model_dir),
        "EARSHOT_MODELS_DIR": str(args.store),
        "EARSHOT_DEVICE": args.device,
        "EARSHOT_COMPUTE_TYPE": args.compute_type,
        "EARSHOT_CPU_THREADS": str(args.cpu_threads),
        "EARSHOT_LOG_LEVEL": "warning",
    }
    from tests.audio_fixtures import encode

    with tempfile.TemporaryDirectory() as tmp:
        server = start_server(env, Path(tmp) / "server.log", timeout=180)
        try:
            client = httpx.Client(base_url=server.base_url, timeout=3600)

            def post(body: bytes) -> str:
                resp = client.post(
                    "/v1/audio/transcriptions",
                    data={"model": "whisper-1", "response_format": "text"},
                    files={"file": ("clip.wav", body, "audio/wav")},
                )
                resp.raise_for_status()
                return resp.text

            post(encode(clip.samples[: WARMUP_SECONDS * RATE]))  # the server loads its model lazily
            return timed(lambda: post(wav))  # `wav` made outside the clock: a client has its file
        finally:
            stop_server(server)


def row(model: str, path: str, b: int | None, clip, text: str, seconds: float) -> dict:
    return {
        "model": model,
        "path": path,
        "batch_size": b,
        "wer_pct": round(100 * word_error_rate([(clip.text, text)]), 2),
        "seconds": round(seconds, 2),
        "rtf": round(seconds / clip.duration, 4),
        "text": text,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| model | path | B | WER % | seconds | RTF | x fw seq |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        note = f" ({r['x_earshot_none']:.2f} x earshot none)" if "x_earshot_none" in r else ""
        lines.append(
            f"| {r['model']} | {r['path']} | {r['batch_size'] or '-'} | {r['wer_pct']:.2f} | {r['seconds']:.1f} "
            f"| {r['rtf']:.3f} | {r['x_fw_sequential']:.2f}{note} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(wheel_models.WHEEL_MODELS))
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--compute-type", default="auto")
    parser.add_argument("--batch-size", default="auto", help="B, or a comma list to sweep (default: 4 CPU, 16 CUDA)")
    parser.add_argument("--cpu-threads", type=int, default=0)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--store", type=Path, default=Path.home() / ".cache" / "earshot" / "bench-models")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    # Resolved once so the server and the in-process model are told the very same thing.
    args.device = pick_device(args.device)
    args.compute_type = pick_compute_type(args.compute_type, args.device)
    if args.batch_size == "auto":
        batch_sizes = [DEFAULT_BATCH_SIZE.get(args.device, 4)]
    else:
        batch_sizes = [int(b) for b in args.batch_size.split(",")]

    t0 = time.perf_counter()
    clip = long_recording()
    # Every path gets the samples the server decodes from the 16-bit WAV upload: float32 and int16
    # audio differ by < 1e-4, yet enough to flip a beam (base: 0.81 % vs 1.12 % WER, measured), and
    # the HTTP row is only comparable to the in-process ones when all decode the very same input.
    wav = clip.wav()
    clip.samples = decode(io.BytesIO(wav))
    print(f"audio: {clip.duration:.1f} s, {len(clip.text.split())} words (made in {time.perf_counter() - t0:.0f} s)")
    print(f"device {args.device}, compute type {args.compute_type}, cpu threads {args.cpu_threads}, B {batch_sizes}")

    rows = []
    for name in args.models.split(","):
        print(f"{name}:", flush=True)
        rows += bench_model(name, args, clip, wav, batch_sizes)

    # Other work on the machine skews the rows it overlaps; the load average shows whether there was any.
    load = os.getloadavg()[2]
    print()
    print(table(rows))
    print(f"\nload average over the last 15 min: {load:.2f} on {os.cpu_count()} cores")
    if args.json:
        settings = {"device": args.device, "compute_type": args.compute_type, "cpu_threads": args.cpu_threads,
                    "batch_sizes": batch_sizes, "audio_seconds": round(clip.duration, 2), "load_avg_15min": load}
        args.json.write_text(json.dumps({"settings": settings, "reference": clip.text, "rows": rows}, indent=2))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
