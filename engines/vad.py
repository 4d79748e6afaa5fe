"""Voice-activity chunking: silero-vad speech regions packed into recogniser chunks of at most 30 s.

How OpenAI's `chunking_strategy` becomes chunks (`plan_chunks`):

1. Loudness (`auto` only): one gain for the whole file, from a gated mean-square level in the
   style of EBU R128 / ITU-R BS.1770 (400 ms blocks, absolute gate -70 dBFS, relative gate -10 dB;
   no K-weighting), bringing the speech to -23 dBFS. The gain is clipped to [-20 dB, +30 dB] and the
   scaled samples to [-1, 1]. The VAD and the recogniser both see the scaled samples.
2. Speech probability per 32 ms frame from silero-vad's batched ("sequence") ONNX model, which
   ships inside the `silero-vad` package: nothing is downloaded, and it runs on onnxruntime without
   torch, a few hundred frames per call.
3. Speech regions with hysteresis: speech starts at a frame >= `threshold` and ends once the
   probability has stayed below `threshold - 0.15` for `silence_duration_ms`; regions shorter than
   250 ms are dropped as clicks. A region is padded by `prefix_padding_ms` before (at most 10 s)
   and by up to 300 ms after (never more than `silence_duration_ms`, so padding stays in the
   silence that ended the region).
4. Chunks: consecutive padded regions are joined (the silence between them left out) while the
   joined audio stays within 30 s, so chunks are cut only between regions, i.e. in silence. A
   region that would not fit into 30 s on its own (speech without a long enough pause) is cut at
   its quietest point (lowest smoothed speech probability) in the second half of the allowance.

Everything is lazy and works on bounded pieces of the audio, so a 2-hour file is planned without
copying it; `Chunk.samples` builds one chunk's audio when the recogniser asks for it.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines import telemetry
from engines.base import SAMPLE_RATE, Chunking

FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
_CONTEXT = 64  # samples of the previous frame the model sees with each frame
FRAMES_PER_CALL = 1024  # frames per ONNX call (~33 s of audio)
MAX_CHUNK_SAMPLES = 30 * SAMPLE_RATE  # one Whisper window
NEG_THRESHOLD_GAP = 0.15  # silero-vad's default hysteresis
MIN_SPEECH_MS = 250
TAIL_PADDING_MS = 300
MAX_PREFIX_PADDING_MS = 10_000
_SMOOTH_FRAMES = 5  # forced cuts look for the quietest ~160 ms

TARGET_DBFS = -23.0
GAIN_DB_RANGE = (-20.0, 30.0)
_LOUDNESS_BLOCK = SAMPLE_RATE * 4 // 10  # 400 ms
_ABSOLUTE_GATE = 10 ** (-70 / 10)  # mean square at -70 dBFS
_RELATIVE_GATE_DB = -10.0
_SCAN_SAMPLES = 150 * _LOUDNESS_BLOCK  # one minute per numpy pass keeps temporaries small


@dataclass(frozen=True)
class Chunk:
    """Speech spans of the original audio that are recognised together, in time order.

    `spans` are `[start, end)` sample ranges; the recogniser sees them joined, so a time inside the
    chunk maps back through the span it falls into (`to_original`).
    """

    spans: tuple[tuple[int, int], ...]
    gain: float = 1.0

    @property
    def start(self) -> int:
        return self.spans[0][0]

    @property
    def end(self) -> int:
        return self.spans[-1][1]

    @property
    def num_samples(self) -> int:
        return sum(e - s for s, e in self.spans)

    @property
    def duration(self) -> float:
        return self.num_samples / SAMPLE_RATE

    def samples(self, audio: np.ndarray) -> np.ndarray:
        """The chunk's audio as the recogniser gets it: spans joined, gain applied."""
        joined = np.concatenate([audio[s:e] for s, e in self.spans]).astype(np.float32, copy=False)
        return _apply_gain(joined, self.gain)

    def after(self, seconds: float) -> Chunk:
        """The part of the chunk from `seconds` (chunk time) on, as a chunk of its own."""
        skip = int(round(seconds * SAMPLE_RATE))
        spans = []
        for s, e in self.spans:
            if skip >= e - s:
                skip -= e - s
                continue
            spans.append((s + skip, e))
            skip = 0
        return Chunk(tuple(spans), self.gain)

    def to_original(self, seconds: float, *, is_end: bool = False) -> float:
        """Seconds in the chunk -> seconds in the original audio.

        Times past the chunk's audio are clamped to its end. A time exactly at the joint of two
        spans is the end of the earlier span for an end time and the start of the later one for a
        start time, so nothing is placed inside the removed silence.
        """
        position = min(max(float(seconds) * SAMPLE_RATE, 0.0), float(self.num_samples))
        offset = 0
        for index, (s, e) in enumerate(self.spans):
            length = e - s
            last = index == len(self.spans) - 1
            inside = position <= offset + length if is_end else position < offset + length
            if inside or last:
                return (s + position - offset) / SAMPLE_RATE
            offset += length
        raise AssertionError("unreachable: a chunk has at least one span")


def _apply_gain(samples: np.ndarray, gain: float) -> np.ndarray:
    if gain == 1.0:
        return samples
    return np.clip(samples * np.float32(gain), -1.0, 1.0)


def loudness_gain(audio: np.ndarray) -> float:
    """Linear gain that brings the gated loudness of `audio` to TARGET_DBFS (see module doc)."""
    powers = []
    usable = len(audio) - len(audio) % _LOUDNESS_BLOCK
    for first in range(0, usable, _SCAN_SAMPLES):
        part = audio[first : min(first + _SCAN_SAMPLES, usable)].astype(np.float64)
        powers.append(np.mean(np.square(part.reshape(-1, _LOUDNESS_BLOCK)), axis=1))
    if len(audio) % _LOUDNESS_BLOCK >= _LOUDNESS_BLOCK // 4:  # a tail of at least 100 ms counts
        powers.append(np.array([np.mean(np.square(audio[usable:].astype(np.float64)))]))
    if not powers:
        return 1.0
    blocks = np.concatenate(powers)
    gated = blocks[blocks > _ABSOLUTE_GATE]
    if gated.size == 0:
        return 1.0
    relative_gate = gated.mean() * 10 ** (_RELATIVE_GATE_DB / 10)
    gated = gated[gated > relative_gate]
    level_db = 10 * np.log10(gated.mean())
    gain_db = float(np.clip(TARGET_DBFS - level_db, *GAIN_DB_RANGE))
    return float(10 ** (gain_db / 20))


class _SileroSequence:
    """silero-vad's batched ONNX model from the installed package, loaded once for the process.

    onnxruntime sessions may be run from several threads at once; the model's recurrent state is
    passed in and out explicitly, so concurrent requests never share state.
    """

    _lock = threading.Lock()
    _session = None

    @classmethod
    def session(cls):
        if cls._session is None:
            with cls._lock:
                if cls._session is None:
                    import onnxruntime

                    telemetry.quiet_onnxruntime(onnxruntime)
                    options = onnxruntime.SessionOptions()
                    # The recurrent model is sequential; one thread per request is what it can use.
                    options.inter_op_num_threads = 1
                    options.intra_op_num_threads = 1
                    cls._session = onnxruntime.InferenceSession(
                        str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
                    )
        return cls._session


def model_path() -> Path:
    """The sequence model inside the installed silero-vad package.

    Found without importing the package: `import silero_vad` imports torch and sets torch's global
    thread count to 1, which would slow every other torch user in the process (diarization).
    """
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the silero-vad package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad_16k_sequence.onnx"
    if not path.is_file():
        raise RuntimeError(f"silero-vad's sequence model is missing: {path}")
    return path


class SileroStream:
    """silero-vad's recurrent state for one audio stream, so frames can be scored as they arrive.

    The state is the LSTM's hidden and cell vectors plus the last `_CONTEXT` samples of the previous
    frame; scoring a stream's frames in any grouping gives the probabilities of scoring them at once.
    """

    def __init__(self) -> None:
        self._hidden = np.zeros((1, 1, 128), dtype=np.float32)
        self._cell = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)

    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """Speech probability of each row of `frames` (shape (n, FRAME), float32), continuing the stream."""
        if len(frames) == 0:
            return np.zeros(0, dtype=np.float32)
        contexts = np.empty((len(frames), _CONTEXT), dtype=np.float32)
        contexts[0] = self._context
        contexts[1:] = frames[:-1, -_CONTEXT:]
        self._context = frames[-1, -_CONTEXT:].copy()
        probs, self._hidden, self._cell = _SileroSequence.session().run(
            ["speech_probs", "hn", "cn"],
            {"input": np.concatenate((contexts, frames), axis=1), "h": self._hidden, "c": self._cell},
        )
        return probs.reshape(-1)


def speech_probabilities(audio: np.ndarray, gain: float = 1.0) -> Iterator[np.ndarray]:
    """Per-frame speech probabilities (one per FRAME samples, the last frame zero-padded), in blocks."""
    stream = SileroStream()
    step = FRAME * FRAMES_PER_CALL
    for first in range(0, len(audio), step):
        part = _apply_gain(np.asarray(audio[first : first + step], dtype=np.float32), gain)
        frames = np.zeros(((len(part) + FRAME - 1) // FRAME, FRAME), dtype=np.float32)
        frames.reshape(-1)[: len(part)] = part
        yield stream.probabilities(frames)


@dataclass(frozen=True)
class Region:
    """Detected speech, `[start, end)` in samples, before padding."""

    start: int
    end: int
    # Cut because it reached the length limit (not at a pause): the pieces join without padding.
    cut_start: bool = False
    cut_end: bool = False


def speech_regions(
    audio: np.ndarray, chunking: Chunking, gain: float = 1.0, max_samples: int | None = None
) -> Iterator[Region]:
    """Speech regions of `audio` in time order (hysteresis state machine over frame probabilities).

    `max_samples` bounds a region's length (default: what still fits into one chunk with padding).
    """
    if max_samples is None:
        prefix, tail = paddings(chunking)
        max_samples = MAX_CHUNK_SAMPLES - prefix - tail
    max_frames = max(max_samples // FRAME, 2 * _SMOOTH_FRAMES)
    threshold = chunking.threshold
    negative = max(threshold - NEG_THRESHOLD_GAP, 0.01)
    silence_samples = chunking.silence_duration_ms * SAMPLE_RATE / 1000
    min_speech_samples = MIN_SPEECH_MS * SAMPLE_RATE / 1000
    total = len(audio)

    start: int | None = None  # first frame of the open region
    silence_from: int | None = None  # first frame of the quiet stretch that may end it
    cut_start = False
    history: list[float] = []  # probabilities since `start`, for choosing a forced cut

    def region(first: int, stop: int, cut_end: bool) -> Region | None:
        begin, end = first * FRAME, min(stop * FRAME, total)
        if end <= begin or (not cut_start and not cut_end and end - begin <= min_speech_samples):
            return None
        return Region(begin, end, cut_start, cut_end)

    frame = 0
    for block in speech_probabilities(audio, gain):
        for p in block.tolist():
            i, frame = frame, frame + 1
            if start is None:
                if p >= threshold:
                    start, silence_from, cut_start, history = i, None, False, [p]
                continue
            history.append(p)
            if p >= threshold:
                silence_from = None
            elif p < negative:
                if silence_from is None:
                    silence_from = i
                if (i - silence_from) * FRAME >= silence_samples:
                    found = region(start, silence_from, False)
                    if found:
                        yield found
                    start = None
                    continue
            if i + 1 - start > max_frames:
                cut = start + _quietest(history, max_frames)
                found = region(start, cut, True)
                if found:
                    yield found
                history = history[cut - start :]
                start, cut_start = cut, True
                if silence_from is not None:
                    silence_from = max(silence_from, cut)
    if start is not None:
        found = region(start, frame, False)
        if found:
            yield found


def has_speech(samples: np.ndarray) -> bool:
    """Whether any speech region is found in `samples`, loudness normalised first (as `auto`)."""
    return next(speech_regions(samples, Chunking(), loudness_gain(samples)), None) is not None


def speech_seconds(samples: np.ndarray) -> float:
    """Seconds of speech found in `samples`, loudness normalised first (as `auto`)."""
    regions = speech_regions(samples, Chunking(), loudness_gain(samples))
    return sum(r.end - r.start for r in regions) / SAMPLE_RATE


def _quietest(history: list[float], max_frames: int) -> int:
    """Offset of the least speech-like frame in the second half of an over-long region."""
    probs = np.asarray(history[:max_frames], dtype=np.float64)
    # Edge padding, not zeros: a zero-padded edge would look like silence and attract the cut.
    padded = np.pad(probs, _SMOOTH_FRAMES // 2, mode="edge")
    smooth = np.convolve(padded, np.ones(_SMOOTH_FRAMES) / _SMOOTH_FRAMES, mode="valid")
    half = max(1, len(probs) // 2)
    return half + int(np.argmin(smooth[half:]))


def paddings(chunking: Chunking) -> tuple[int, int]:
    """(prefix, tail) padding in samples."""
    prefix = min(chunking.prefix_padding_ms, MAX_PREFIX_PADDING_MS) * SAMPLE_RATE // 1000
    tail = min(TAIL_PADDING_MS, chunking.silence_duration_ms) * SAMPLE_RATE // 1000
    return prefix, tail


def padded_spans(audio: np.ndarray, chunking: Chunking, gain: float = 1.0) -> Iterator[tuple[int, int]]:
    """Speech regions with their padding, never overlapping each other, in time order."""
    prefix, tail = paddings(chunking)
    previous_end = 0
    for r in speech_regions(audio, chunking, gain):
        start = r.start if r.cut_start else max(r.start - prefix, previous_end)
        end = r.end if r.cut_end else min(r.end + tail, len(audio))
        previous_end = end
        yield start, end


def plan_chunks(audio: np.ndarray, chunking: Chunking, first_chunk_seconds: float | None = None) -> Iterator[Chunk]:
    """Chunks of at most 30 s of speech, in time order, produced as the VAD advances.

    `first_chunk_seconds` closes the first chunk at the first pause after that much speech (a
    stream then shows its first words sooner); the cut still falls only in silence."""
    gain = loudness_gain(audio) if chunking.normalise_loudness else 1.0
    spans: list[tuple[int, int]] = []
    length = 0
    first_limit = None if first_chunk_seconds is None else int(first_chunk_seconds * SAMPLE_RATE)
    for start, end in padded_spans(audio, chunking, gain):
        if spans and (length + (end - start) > MAX_CHUNK_SAMPLES or (first_limit is not None and length >= first_limit)):
            first_limit = None
            yield Chunk(tuple(spans), gain)
            spans, length = [], 0
        if spans and spans[-1][1] == start:
            spans[-1] = (spans[-1][0], end)  # touching spans are one stretch of audio
        else:
            spans.append((start, end))
        length += end - start
    if spans:
        yield Chunk(tuple(spans), gain)
