"""The capability protocol between the serving layer and speech engines.

Routes and the serving layer only see these types; each engine module (e.g.
`engines.whisper`) adapts its library to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

SAMPLE_RATE = 16000
Task = Literal["transcribe", "translate"]


@dataclass(frozen=True)
class Chunking:
    """Cut the audio at voice activity before recognition (OpenAI's `chunking_strategy`)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 200
    # `auto` also normalises loudness first; `server_vad` takes the caller's settings as they are.
    normalise_loudness: bool = False


@dataclass(frozen=True)
class TranscribeOptions:
    task: Task = "transcribe"
    language: str | None = None
    # With no `language`: detection picks the most probable of these (empty: any language).
    languages: tuple[str, ...] = ()
    prompt: str | None = None
    # Words or phrases fed to the decoder before every window (faster-whisper's `hotwords`).
    hotwords: str | None = None
    # 0 means "let the engine raise the temperature on failure" (OpenAI's documented behaviour).
    temperature: float = 0.0
    word_timestamps: bool = False
    token_logprobs: bool = False
    # None: Whisper's standard sequential 30 s windows.
    chunking: Chunking | None = None
    # The caller streams: produce the first text as early as possible, even at some batching cost.
    streaming: bool = False


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int]


@dataclass(frozen=True)
class Segment:
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: list[Word] | None = None
    logprobs: list[TokenLogprob] | None = None


@dataclass
class TranscriptionInfo:
    language: str
    language_probability: float
    duration: float
    # Encoder positions that covered real audio (Whisper: one per 20 ms).
    audio_tokens: int
    # Tokens of the caller's prompt that were fed to the decoder.
    prompt_tokens: int


@dataclass
class Transcription:
    """A transcription in progress: `segments` is produced lazily, in time order."""

    info: TranscriptionInfo
    segments: Iterator[Segment]


class SpeechEngine(Protocol):
    """What the serving layer needs from a speech-to-text engine."""

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcription:
        """Start transcribing 16 kHz mono float32 `audio`; segments are decoded as they are consumed."""
        ...

    def close(self) -> None:
        """Release the engine's memory (model weights, device buffers)."""
        ...


@dataclass(frozen=True)
class Turn:
    """One speaker talking alone from `start` to `end` (seconds)."""

    start: float
    end: float
    # The diarizer's own label for the voice (e.g. pyannote's SPEAKER_00), not the API's A/B/C.
    speaker: str


@dataclass
class Diarization:
    """Who spoke when.

    `turns` are in time order and never overlap (overlapping speech is given to one speaker),
    which is what attributing transcript words needs. `embeddings` holds one vector per speaker
    label, computed from that speaker's own speech in the same space as `Diarizer.embed`, so a
    reference recording can be compared with it; a speaker with too little speech has none.
    """

    turns: list[Turn]
    embeddings: dict[str, np.ndarray]


class Diarizer(Protocol):
    """What the serving layer needs from a speaker-diarization engine."""

    # Cosine similarity at or above which a reference recording and a diarized speaker are taken
    # to be the same voice; it belongs to the embedding model (see engines.speakers).
    match_threshold: float

    def diarize(
        self, audio: np.ndarray, *, embed_speakers: bool = True, should_stop: Callable[[], bool] | None = None
    ) -> Diarization:
        """Diarize 16 kHz mono float32 `audio`; `embed_speakers=False` skips the per-speaker embeddings.
        `should_stop` is polled between units of work; when it returns True the engine raises."""
        ...

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """The speaker embedding of 16 kHz mono float32 `audio` (one voice, a few seconds)."""
        ...

    def close(self) -> None:
        """Release the engine's memory (model weights, device buffers)."""
        ...
