"""Real speech made on the spot, with known words and known speech times, for the real-model tests
and benchmarks: hibari's neural voice (`heart`, the one its wheel ships) and espeak-ng's voices.

Every clip is laid out here (leading silence, sentences, pauses), so where each sentence's speech
starts and ends is known to the sample; `word_error_rate` scores transcripts against the text.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RATE = 16000
TEXTS = Path(__file__).resolve().parent / "assets" / "texts"
# Samples below this at a sentence's ends are silence (both voices fade to exact zeros or near).
EDGE_LEVEL = 2e-3

# Short English sentences, no digits or abbreviations (whose spelling a model may choose).
SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please remember to bring your umbrella because it will rain this evening.",
    "Our meeting with the design team has been moved to Thursday afternoon.",
    "She opened the window and listened to the birds singing in the garden.",
    "The train to the city leaves from the second platform every morning.",
    "Could you tell me where the nearest library is?",
)

# (espeak-ng voice, Whisper's language name, a sentence, its English translation, English words a
# translation cannot do without). Chosen as sentences that Whisper base recognises in espeak-ng's
# robotic voices at all: with others it guessed Latin, Yiddish or Thai.
FOREIGN = (
    ("es", "spanish", "El tren sale de la estación todas las mañanas.",
     "The train leaves the station every morning.", {"train", "station"}),
    ("fr", "french", "Je voudrais une tasse de café, s'il vous plaît.",
     "I would like a cup of coffee, please.", {"coffee", "cup"}),
    ("de", "german", "Ich habe heute Morgen einen Brief an meine Großmutter geschrieben.",
     "This morning I wrote a letter to my grandmother.", {"morning", "letter", "grandmother", "wrote", "write"}),
)


def long_text() -> list[str]:
    """A story of about 985 words (over five minutes spoken), one sentence a line."""
    return [line.strip() for line in (TEXTS / "harbor.txt").read_text().splitlines() if line.strip()]


# --- voices ---------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _hibari():
    from hibari import Hibari

    return Hibari()


def _resample(samples: np.ndarray, rate: int) -> np.ndarray:
    if rate == RATE:
        return samples.astype(np.float32)
    from scipy.signal import resample_poly

    g = np.gcd(rate, RATE)
    return resample_poly(samples, RATE // g, rate // g).astype(np.float32)


@functools.lru_cache(maxsize=256)
def hibari(text: str, speed: float = 1.0) -> np.ndarray:
    """hibari's `heart` voice at 16 kHz, trimmed to the speech (fixed seed: the same every run)."""
    samples = _hibari()(text, speed=speed, seed=0)
    return trim(_resample(np.asarray(samples, np.float32), 24000))


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


@functools.lru_cache(maxsize=256)
def espeak(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    """espeak-ng at 16 kHz, trimmed to the speech."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], check=True, capture_output=True
    ).stdout
    from app.audio import decode
    import io

    return trim(decode(io.BytesIO(wav)) * 0.7)


def trim(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > EDGE_LEVEL)
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1].copy()


# --- clips ----------------------------------------------------------------------------------------


@dataclass
class Clip:
    samples: np.ndarray
    sentences: list[str]
    spans: list[tuple[float, float]]  # seconds where each sentence's speech starts and ends

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    @property
    def duration(self) -> float:
        return len(self.samples) / RATE

    def wav(self) -> bytes:
        from tests.audio_fixtures import encode

        return encode(self.samples)


def compose(parts: list[tuple[str, np.ndarray]], lead: float = 0.5, pauses=(0.6,), tail: float = 0.6) -> Clip:
    """Sentences one after another: `lead` seconds of silence, then each with a pause after it."""
    chunks = [np.zeros(int(lead * RATE), np.float32)]
    spans, t = [], lead
    for k, (_, speech) in enumerate(parts):
        spans.append((t, t + len(speech) / RATE))
        pause = pauses[k % len(pauses)] if k < len(parts) - 1 else tail
        chunks += [speech, np.zeros(int(pause * RATE), np.float32)]
        t += (len(speech) + int(pause * RATE)) / RATE
    return Clip(np.concatenate(chunks), [text for text, _ in parts], spans)


def long_recording(seed: int = 7) -> Clip:
    """The story read by hibari with natural pauses of 0.3-1.5 s between sentences: over 5 min."""
    rng = np.random.default_rng(seed)
    lines = long_text()
    pauses = tuple(float(p) for p in rng.uniform(0.3, 1.5, len(lines)))
    return compose([(line, hibari(line)) for line in lines], lead=1.0, pauses=pauses)


# --- scoring --------------------------------------------------------------------------------------


def normalise(text: str) -> list[str]:
    """Lower-case words without punctuation; hyphens split words, apostrophes stay inside them."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    text = re.sub(r"[-–—]", " ", text)
    return re.findall(r"[\w']+", text)


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words: substitutions + deletions + insertions."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        current = [i] + [0] * len(hypothesis)
        for j, hyp in enumerate(hypothesis, 1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref != hyp))
        previous = current
    return previous[-1]


def word_error_rate(pairs: list[tuple[str, str]]) -> float:
    """Corpus WER over (reference, hypothesis) pairs."""
    errors = sum(word_errors(normalise(r), normalise(h)) for r, h in pairs)
    return errors / max(1, sum(len(normalise(r)) for r, _ in pairs))
