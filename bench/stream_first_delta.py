"""Time to the first streamed delta, as a fraction of the whole streamed response.

A 60 s input through `stream=true` on a random-weight model of a real Whisper architecture
(wired to emit a fixed transcript per 30 s window). Both times come from the same request, so the
fraction needs no reference machine.

    .venv/bin/python bench/stream_first_delta.py [--dims tiny|base|small] [--seconds 60] [--runs 7]
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
from tests.speech_clips import clips, compose  # noqa: E402

DIMS = {"test": factory.TEST_DIMS, "tiny": factory.TINY_DIMS, "base": factory.BASE_DIMS, "small": factory.SMALL_DIMS}


def speech_input(seconds: float):
    """Sentences with pauses, up to `seconds` (VAD needs real speech to find chunks)."""
    layout, total, i = [0.5], 0.5, 0
    sentences = clips()
    while total < seconds:
        sentence = sentences[i % len(sentences)]
        layout += [sentence, 0.8]
        total += len(sentence) / 16000 + 0.8
        i += 1
    return compose(layout).audio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", choices=sorted(DIMS), default="base")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--chunking", default=None, help="chunking_strategy to send, e.g. auto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = factory.build_whisper_model(tmp / f"wired-{args.dims}", dims=DIMS[args.dims])
        wav = encode(speech_input(args.seconds) if args.chunking else speechlike(args.seconds), "wav")
        server = start_server(
            {"EARSHOT_ASR_MODEL": str(model_dir), "EARSHOT_MODELS_DIR": str(tmp), "EARSHOT_LOG_LEVEL": "warning"},
            tmp / "server.log",
        )
        data = {"model": "gpt-4o-transcribe", "stream": "true"}
        if args.chunking:
            data["chunking_strategy"] = args.chunking
        fractions, firsts, totals = [], [], []
        try:
            with httpx.Client(base_url=server.base_url, timeout=600) as http:
                for run in range(args.runs + 1):
                    start = time.perf_counter()
                    first = None
                    with http.stream(
                        "POST", "/v1/audio/transcriptions", data=data, files={"file": ("clip.wav", wav, "audio/wav")}
                    ) as resp:
                        for line in resp.iter_lines():
                            if first is None and line.startswith('data: {"type":"transcript.text.delta"'):
                                first = time.perf_counter() - start
                    total = time.perf_counter() - start
                    if run == 0:
                        continue  # warm-up: model load
                    firsts.append(first)
                    totals.append(total)
                    fractions.append(first / total)
        finally:
            stop_server(server)

    print(f"model: wired random-weight Whisper '{args.dims}' (CPU), {args.seconds:.0f} s input, {args.runs} runs, "
          f"chunking_strategy={args.chunking}")
    print(f"time to first delta: median {statistics.median(firsts):.3f} s; whole stream: median "
          f"{statistics.median(totals):.3f} s")
    print(f"first-delta fraction: median {statistics.median(fractions):.3f} "
          f"(range {min(fractions):.3f} – {max(fractions):.3f})")


if __name__ == "__main__":
    main()
