"""Accuracy of chunking strategies and batched decoding, measured with the demo model.

A recording of at least 5 minutes is built from espeak-ng sentences (voices and speeds the demo
model `models/earshot-tiny-en` never heard in training) with pauses of 0.3-3 s and a few long
ones (6-12 s), so the true transcript is known. It is sent through the live server with
`chunking_strategy` none (faster-whisper's sequential 30 s windows, previous-text prompts),
`auto` and `server_vad`; the VAD modes run once on a server decoding chunks one at a time
(EARSHOT_BATCH_SIZE=1) and once batched (EARSHOT_BATCH_SIZE=4, the CPU default). Prints word
error rate per mode, and each mode's wall time as a ratio to `none` measured in the same round
(rounds interleave the modes, so machine noise hits them alike).

    .venv/bin/python bench/tiny_model_wer.py [--minutes 5] [--rounds 2] [--seed 7] [--model DIR]

Needs espeak-ng.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.audio_fixtures import encode  # noqa: E402
from tests.conftest import start_server, stop_server  # noqa: E402
from tools import tiny_speech  # noqa: E402
from tools.tiny_speech import SAMPLE_RATE, Voice  # noqa: E402

MODEL_DIR = ROOT / "models" / "earshot-tiny-en"
VOICES = (
    Voice("en-us", "m5", 150, 50),
    Voice("en", "f3", 175, 60),
    Voice("en-gb-x-rp", "m5", 175, 40),
    Voice("en-029", "f3", 150, 55),
    Voice("en-gb-x-gbcwmd", "m3", 150, 50),
)
MODES = (
    ("none", None, "sequential"),
    ("auto", "auto", "sequential"),
    ("server_vad", '{"type": "server_vad"}', "sequential"),
    ("auto", "auto", "batched"),
    ("server_vad", '{"type": "server_vad"}', "batched"),
)


def recording(minutes: float, seed: int) -> tuple[np.ndarray, str]:
    """The audio (16 kHz) and its true transcript."""
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(0.7 * SAMPLE_RATE), np.float32)]
    texts = []
    total = 0.7
    k = 0
    while total < minutes * 60:
        voice = VOICES[(k // 4) % len(VOICES)]  # a speaker talks for a few sentences
        text = tiny_speech.sentence(rng)
        speech = tiny_speech.synthesise(text, voice)
        pause = rng.uniform(6, 12) if rng.random() < 0.05 else rng.uniform(0.3, 3.0)
        parts += [speech, np.zeros(int(pause * SAMPLE_RATE), np.float32)]
        texts.append(text)
        total += len(speech) / SAMPLE_RATE + pause
        k += 1
    return np.concatenate(parts) * 0.5, "".join(texts)


def transcribe(client: httpx.Client, wav: bytes, chunking: str | None) -> tuple[str, float]:
    data = {"model": "whisper-1", "response_format": "text"}
    if chunking is not None:
        data["chunking_strategy"] = chunking
    started = time.perf_counter()
    response = client.post("/v1/audio/transcriptions", files={"file": ("talk.wav", wav, "audio/wav")}, data=data)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return response.text, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--model", type=Path, default=MODEL_DIR, help="model folder (default: the demo model)")
    args = parser.parse_args()
    if not tiny_speech.espeak_available():
        sys.exit("espeak-ng is not installed")

    audio, reference = recording(args.minutes, args.seed)
    wav, seconds = encode(audio), len(audio) / SAMPLE_RATE
    ref_words = tiny_speech.normalise(reference)
    print(f"recording: {seconds / 60:.1f} min, {len(ref_words)} words, {len(VOICES)} held-out voices")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        servers = {
            name: start_server(
                {"EARSHOT_ASR_MODEL": str(args.model.resolve()), "EARSHOT_MODELS_DIR": str(tmp), "EARSHOT_BATCH_SIZE": size,
                 "EARSHOT_LOG_LEVEL": "warning"},
                tmp / f"server-{name}.log",
            )
            for name, size in (("sequential", "1"), ("batched", "4"))
        }
        try:
            clients = {name: httpx.Client(base_url=s.base_url, timeout=1800) for name, s in servers.items()}
            first = encode(audio[: 5 * SAMPLE_RATE])
            transcribe(clients["sequential"], first, None)  # load the models
            transcribe(clients["batched"], first, "auto")
            results: dict[tuple[str, str], list] = {(m, b): [] for m, _, b in MODES}
            for _ in range(args.rounds):
                base = None
                for mode, chunking, batching in MODES:
                    text, elapsed = transcribe(clients[batching], wav, chunking)
                    base = elapsed if base is None else base
                    errors = tiny_speech.word_errors(ref_words, tiny_speech.normalise(text))
                    results[(mode, batching)].append((errors, elapsed / base))
        finally:
            for server in servers.values():
                stop_server(server)

    print(f"{'chunking':<12}{'decoding':<12}{'WER':>8}{'errors':>8}{'time ÷ none':>14}")
    for (mode, batching), runs in results.items():
        errors = runs[0][0]
        same = all(r[0] == errors for r in runs)
        ratios = [r[1] for r in runs]
        print(
            f"{mode:<12}{batching if mode != 'none' else '(windows)':<12}{errors / len(ref_words) * 100:>7.1f}%"
            f"{errors:>8}{statistics.median(ratios):>10.2f} ({min(ratios):.2f}-{max(ratios):.2f})"
            + ("" if same else "  [errors differ between rounds]")
        )


if __name__ == "__main__":
    main()
