"""Speech data for the tiny demo model: its vocabulary, a sentence grammar, espeak-ng synthesis,
and 30 s Whisper windows built from synthesised utterances with Whisper-style targets.

Used by `tools/train_tiny_model.py` (training) and `bench/tiny_model_wer.py` (a long recording).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16000
ESPEAK_RATE = 22050

DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
COLOURS = ("red", "blue", "green")
SIZES = ("big", "small")
THINGS = ("door", "window", "light", "music", "car", "phone", "book")
ANIMALS = ("cat", "dog")
PLACES = ("room", "house", "car")
DRINKS = ("water", "coffee", "tea")
WHEN = ("today", "tomorrow", "now")
DIRECTIONS = ("left", "right", "up", "down")
VERBS = ("open", "close", "stop")


def _digits(rng: np.random.Generator, lo: int, hi: int) -> list[str]:
    return [DIGITS[i] for i in rng.integers(0, 10, rng.integers(lo, hi + 1))]


def _pick(rng: np.random.Generator, options) -> str:
    return options[int(rng.integers(len(options)))]


def _templates():
    p = _pick
    return [
        lambda r: ["please", "call", "me", "at", *_digits(r, 3, 5)],
        lambda r: ["my", "number", "is", *_digits(r, 3, 6)],
        lambda r: _digits(r, 2, 6),
        lambda r: _digits(r, 1, 3) + ["and", *_digits(r, 1, 3)],
        lambda r: ["turn", p(r, ("on", "off")), "the", p(r, ("light", "lights", "music")), "in", "the", p(r, PLACES)],
        lambda r: [p(r, ("please",)), p(r, VERBS), "the", p(r, COLOURS + SIZES), p(r, ("door", "window", "car", "book"))],
        lambda r: [p(r, VERBS), "the", p(r, ("door", "window", "music", "car")), p(r, WHEN)],
        lambda r: ["the", p(r, COLOURS + SIZES), p(r, ANIMALS + THINGS), "is", "in", "the", p(r, PLACES)],
        lambda r: ["the", p(r, ANIMALS), "is", p(r, SIZES + ("good", "cold", "hot"))],
        lambda r: ["go", p(r, DIRECTIONS), p(r, WHEN)],
        lambda r: ["turn", p(r, ("left", "right")), "at", "the", p(r, COLOURS), p(r, ("house", "car", "door"))],
        lambda r: ["good", p(r, ("morning", "night"))],
        lambda r: ["hello", p(r, ("my", "good")), p(r, ANIMALS)],
        lambda r: ["what", "time", "is", "it", p(r, ("now", "today"))],
        lambda r: ["where", "is", "my", p(r, THINGS + ANIMALS + ("coffee", "tea"))],
        lambda r: [p(r, ("yes", "no")), "the", p(r, THINGS), "is", p(r, ("on", "off", "in", "up", "down"))],
        lambda r: [p(r, DRINKS), "is", p(r, ("cold", "hot", "good")), p(r, WHEN)],
        lambda r: ["i", "want", p(r, ("one", "two", "three")), p(r, ("cups", "books")), "of", p(r, DRINKS + ("music",))],
        lambda r: ["call", "my", p(r, ("phone", "house", "dog")), "at", *_digits(r, 2, 4), p(r, WHEN)],
        lambda r: [p(r, ("yes", "no", "stop", "hello"))],
    ]


_TEMPLATES = _templates()
QUESTION_STARTS = ("what", "where")


def sentence(rng: np.random.Generator) -> str:
    """One sentence of the demo vocabulary as Whisper writes it: ' Please call me at nine two.'"""
    words = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))](rng)
    text = " ".join(words)
    text = text[0].upper() + text[1:]
    return " " + text + ("?" if words[0] in QUESTION_STARTS else ".")


def vocabulary() -> list[str]:
    """Every word the grammar can produce (lower case), sorted."""
    words: set[str] = set(DIGITS)
    rng = np.random.default_rng(0)
    for _ in range(20000):
        words.update(w.lower().strip(".?") for w in sentence(rng).split())
    return sorted(words)


def normalise(text: str) -> list[str]:
    """Words for WER: lower case, punctuation dropped."""
    keep = "".join(c if c.isalnum() or c.isspace() else " " for c in text.lower())
    return keep.split()


def word_errors(reference: list[str], hypothesis: list[str]) -> int:
    """Levenshtein distance over words (substitutions + deletions + insertions)."""
    prev = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        cur = [i] + [0] * len(hypothesis)
        for j, h in enumerate(hypothesis, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


# --------------------------------------------------------------------------------------
# Synthesis
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Voice:
    base: str  # espeak-ng language voice, e.g. "en-us"
    variant: str | None  # espeak-ng voice variant, e.g. "m3"
    speed: int  # words per minute
    pitch: int  # 0..99

    @property
    def name(self) -> str:
        return self.base + (f"+{self.variant}" if self.variant else "")


@dataclass
class Utterance:
    text: str
    samples: np.ndarray  # float32, 16 kHz, trimmed to the speech with a few ms margin
    voice: Voice


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


def synthesise(text: str, voice: Voice) -> np.ndarray:
    """espeak-ng speech at 16 kHz, float32, with espeak's leading/trailing silence trimmed."""
    from scipy.signal import resample_poly

    raw = subprocess.run(
        ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch), "--stdout", text.strip()],
        check=True,
        capture_output=True,
    ).stdout
    # --stdout writes a streaming WAV header (no valid length): the samples follow the 44 bytes.
    pcm = np.frombuffer(raw[44 : 44 + (len(raw) - 44) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    audio = resample_poly(pcm, SAMPLE_RATE // 50, ESPEAK_RATE // 50).astype(np.float32)
    return trim(audio)


def speech_bounds(audio: np.ndarray, threshold: float = 0.02) -> tuple[int, int]:
    """First and last sample of the 10 ms frames louder than `threshold` × the peak frame."""
    frame = SAMPLE_RATE // 100
    n = len(audio) // frame
    if n == 0:
        return 0, len(audio)
    rms = np.sqrt((audio[: n * frame].reshape(n, frame) ** 2).mean(axis=1))
    loud = np.flatnonzero(rms > threshold * rms.max())
    if len(loud) == 0:
        return 0, 0
    return int(loud[0] * frame), int((loud[-1] + 1) * frame)


def trim(audio: np.ndarray, margin: int = SAMPLE_RATE // 100) -> np.ndarray:
    start, end = speech_bounds(audio)
    return audio[max(0, start - margin) : min(len(audio), end + margin)]


class Espeak:
    """espeak-ng through its C library (same engine and audio as the `espeak-ng` command), which
    also reports where each word starts: the training data's word-level frame labels."""

    _AUDIO_OUTPUT_SYNCHRONOUS = 2
    _EVENT_END_OF_LIST, _EVENT_WORD = 0, 1
    _RATE, _PITCH = 1, 3

    def __init__(self) -> None:
        import ctypes
        import ctypes.util

        class EventId(ctypes.Union):
            _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

        class Event(ctypes.Structure):
            _fields_ = [
                ("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", EventId),
            ]

        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        self._lib = ctypes.CDLL(name)
        self._rate = self._lib.espeak_Initialize(self._AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0)
        if self._rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int, int]] = []  # (text position, length, sample)

        def on_audio(wav, n, events):
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            i = 0
            while events[i].type != self._EVENT_END_OF_LIST:
                e = events[i]
                if e.type == self._EVENT_WORD:
                    self._words.append((e.text_position, e.length, e.sample))
                i += 1
            return 0

        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))
        self._callback = callback_type(on_audio)  # kept referenced: espeak holds the pointer
        self._lib.espeak_SetSynthCallback(self._callback)

    def synthesise(self, text: str, voice: Voice) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        """16 kHz float32 speech, trimmed as `synthesise`, and its words with [start, end) samples
        (a word runs until the next one starts; the last until the speech ends)."""
        from scipy.signal import resample_poly

        if self._lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(f"unknown espeak-ng voice {voice.name}")
        self._lib.espeak_SetParameter(self._RATE, voice.speed, 0)
        self._lib.espeak_SetParameter(self._PITCH, voice.pitch, 0)
        self._chunks, self._words = [], []
        data = text.strip().encode()
        self._lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 0, None, None)
        self._lib.espeak_Synchronize()
        pcm = np.concatenate(self._chunks).astype(np.float32) / 32768.0
        audio = resample_poly(pcm, SAMPLE_RATE // 50, self._rate // 50).astype(np.float32)
        start, end = speech_bounds(audio)
        margin = SAMPLE_RATE // 100
        lo, hi = max(0, start - margin), min(len(audio), end + margin)
        scale = SAMPLE_RATE / self._rate
        starts = [min(hi, max(lo, int(sample * scale))) - lo for _, _, sample in self._words]
        words = []
        for k, (pos, length, _) in enumerate(self._words):
            word = "".join(c for c in data[pos - 1 : pos - 1 + length].decode().lower() if c.isalnum())
            stop = starts[k + 1] if k + 1 < len(starts) else hi - lo
            if word and stop > starts[k]:
                words.append((word, starts[k], stop))
        return audio[lo:hi], words
