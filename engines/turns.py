"""Server VAD on a live stream: speech turns found as the audio arrives (OpenAI's `server_vad`).

The same silero-vad model and hysteresis as the offline chunker (`engines.vad`), run frame by frame
as samples are fed:

- A turn opens at a frame whose speech probability is >= `threshold`, and closes once the
  probability has stayed below `max(threshold - 0.15, 0.01)` for `silence_duration_ms`. It is
  announced (`SpeechStarted`) only once its speech has lasted `vad.MIN_SPEECH_MS`, the length the
  offline chunker drops as a click; a shorter region is dropped silently. Its audio starts
  `prefix_padding_ms` before the onset (never before the previous turn's end) and ends
  `min(TAIL_PADDING_MS, silence_duration_ms)` after the speech (`vad.paddings`), so a stream's
  turns are the offline `padded_spans` of the same audio.
- A turn's audio is handed out in `Piece`s, the last one (`final`) right after `SpeechStopped`. A
  long turn is cut before it ends, so text can arrive while the speaker goes on: in the middle of
  the first inner pause of at least `piece_pause_ms` that ends (speech resumes) once the piece
  would hold `piece_seconds`, or, if no such pause comes, at the quietest point of the second half
  of `max_piece_seconds` (one Whisper window), as the offline chunker cuts an over-long region.

Only the audio a turn may still need is kept: the prefix padding while no turn is open, the part of
an open turn not yet handed out (at most `max_piece_seconds`) during one. Samples are counted from
the first one ever fed; all positions are 16 kHz sample indices on that count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines import vad
from engines.base import SAMPLE_RATE, Chunking
from engines.vad import FRAME

_MIN_CAPACITY = 8 * FRAME


@dataclass(frozen=True)
class TurnSettings:
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    # While a turn goes on, hand out what was said so far at an inner pause once this much audio is
    # buffered, so text arrives before the speaker stops.
    piece_seconds: float = 10.0
    # An inner pause at least this long (and shorter than silence_duration_ms, else the turn ends) cuts a piece.
    piece_pause_ms: int = 200
    # A piece never exceeds one Whisper window: cut at the quietest point of its second half if no pause came.
    max_piece_seconds: float = 28.0


@dataclass(frozen=True)
class SpeechStarted:
    start: int  # where the turn's audio begins: speech onset minus prefix padding


@dataclass(frozen=True)
class SpeechStopped:
    end: int  # where the turn's audio ends: end of speech plus tail padding


@dataclass(frozen=True, eq=False)
class Piece:
    """Audio of a turn, `[start, end)`; a turn's pieces follow each other without gap or overlap."""

    audio: np.ndarray
    start: int
    end: int
    final: bool

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Piece):
            return NotImplemented
        return (self.start, self.end, self.final) == (other.start, other.end, other.final) and np.array_equal(
            self.audio, other.audio
        )

    __hash__ = None  # type: ignore[assignment]


Event = SpeechStarted | SpeechStopped | Piece


class _Window:
    """The stream's recent samples, `[first, first + size)`, appended at the back, dropped at the front."""

    def __init__(self) -> None:
        self._data = np.zeros(_MIN_CAPACITY, dtype=np.float32)
        self._head = 0
        self.first = 0
        self.size = 0

    def append(self, samples: np.ndarray) -> None:
        n = len(samples)
        if self._head + self.size + n > len(self._data):
            # Move the live samples to a fresh array twice their size: it grows for a long turn and
            # shrinks back once the turn is handed out, so memory follows what is kept.
            data = np.empty(max(_MIN_CAPACITY, 2 * (self.size + n)), dtype=np.float32)
            data[: self.size] = self._data[self._head : self._head + self.size]
            self._data, self._head = data, 0
        at = self._head + self.size
        self._data[at : at + n] = samples
        self.size += n

    def drop_before(self, index: int) -> None:
        k = min(max(index - self.first, 0), self.size)
        self._head += k
        self.first += k
        self.size -= k

    def copy(self, start: int, end: int) -> np.ndarray:
        if start < self.first or end > self.first + self.size:
            raise RuntimeError(f"samples [{start}, {end}) are no longer buffered")
        offset = self._head - self.first
        return self._data[offset + start : offset + end].copy()


class TurnDetector:
    """Speech turns of one live 16 kHz stream (module doc)."""

    def __init__(self, settings: TurnSettings) -> None:
        if not 0.0 <= settings.threshold <= 1.0:
            raise ValueError("threshold must be between 0 and 1")
        if settings.prefix_padding_ms < 0 or settings.silence_duration_ms < 0 or settings.piece_pause_ms < 0:
            raise ValueError("prefix_padding_ms, silence_duration_ms and piece_pause_ms must not be negative")
        if settings.max_piece_seconds * SAMPLE_RATE < 4 * FRAME or settings.piece_seconds <= 0:
            raise ValueError("max_piece_seconds must be at least 4 VAD frames and piece_seconds positive")
        self.settings = settings
        self._threshold = settings.threshold
        self._negative = max(settings.threshold - vad.NEG_THRESHOLD_GAP, 0.01)
        self._silence = settings.silence_duration_ms * SAMPLE_RATE / 1000
        self._min_speech = vad.MIN_SPEECH_MS * SAMPLE_RATE / 1000
        self._prefix, self._tail = vad.paddings(
            Chunking(settings.threshold, settings.prefix_padding_ms, settings.silence_duration_ms)
        )
        self._piece = int(settings.piece_seconds * SAMPLE_RATE)
        self._pause = settings.piece_pause_ms * SAMPLE_RATE / 1000
        self._max_piece = int(settings.max_piece_seconds * SAMPLE_RATE)

        self._stream = vad.SileroStream()
        self._audio = _Window()
        self._pending = np.zeros(0, dtype=np.float32)  # the start of the next frame, not yet scored
        self._position = 0
        self._frames = 0  # frames scored
        self._probs: list[float] = []  # probabilities of the frames from `_probs_first` on
        self._probs_first = 0
        self._floor = 0  # no turn's audio starts before this: the previous turn's end, or a clear
        self._reset_region()

    def _reset_region(self) -> None:
        self._onset: int | None = None  # first frame of the open region (announced or not)
        self._silence_from: int | None = None  # first frame of the quiet stretch that may end it
        self._turn_start: int | None = None  # set once the region is announced as a turn
        self._piece_start = 0  # where the turn's next piece begins

    @property
    def position(self) -> int:
        """Samples fed so far."""
        return self._position

    @property
    def in_turn(self) -> bool:
        return self._turn_start is not None

    @property
    def buffered(self) -> int:
        """Samples held for turns (the memory this detector keeps, besides < 1 frame waiting to be scored)."""
        return self._audio.size

    def feed(self, samples: np.ndarray) -> list[Event]:
        """Events that `samples` (16 kHz float32, any length) complete, in time order."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        events: list[Event] = []
        step = FRAME * vad.FRAMES_PER_CALL
        # A bounded block at a time: a whole file fed at once is never buffered whole.
        for first in range(0, len(samples), step):
            self._advance(samples[first : first + step], events)
        return events

    def end_turn(self) -> list[Event]:
        """The client committed: the open turn ends here. [] when no turn is open."""
        if self._turn_start is None:
            return []
        events: list[Event] = []
        self._close(self._position, events)
        self._trim()
        return events

    def clear(self) -> None:
        """Forget the open turn and the buffered audio; counting goes on from the current position."""
        self._reset_region()
        self._floor = self._position
        self._trim()

    def _advance(self, part: np.ndarray, events: list[Event]) -> None:
        self._audio.append(part)
        self._position += len(part)
        pending = np.concatenate((self._pending, part)) if len(self._pending) else part
        whole = len(pending) - len(pending) % FRAME
        self._pending = pending[whole:].copy()
        if whole:
            probs = self._stream.probabilities(np.ascontiguousarray(pending[:whole]).reshape(-1, FRAME))
            for p in probs.tolist():
                self._probs.append(p)
                self._frame(self._frames, p, events)
                self._frames += 1
        self._trim()

    def _frame(self, i: int, p: float, events: list[Event]) -> None:
        """One frame through the hysteresis of `vad.speech_regions`, then the piece cuts."""
        if self._onset is None:
            if p < self._threshold:
                return
            self._onset, self._silence_from = i, None
        elif p >= self._threshold:
            if self._silence_from is not None:
                self._pause_ended(i, events)
            self._silence_from = None
        elif p < self._negative:
            if self._silence_from is None:
                self._silence_from = i
            if (i - self._silence_from) * FRAME >= self._silence:
                if self._turn_start is not None:
                    self._close(self._silence_from * FRAME + self._tail, events)
                else:
                    self._reset_region()  # too short: a click, as the offline chunker drops it
                return

        if self._turn_start is None:
            # The region can only end at or after this point, so once this is past the minimum the
            # offline chunker keeps it too.
            speech_end = i + 1 if self._silence_from is None else self._silence_from
            if (speech_end - self._onset) * FRAME <= self._min_speech:
                return
            self._turn_start = self._piece_start = max(self._onset * FRAME - self._prefix, self._floor)
            events.append(SpeechStarted(self._turn_start))

        # One frame of slack: a commit may end the turn up to a frame past the last scored one.
        if (i + 2) * FRAME - self._piece_start > self._max_piece:
            first = -(-self._piece_start // FRAME)
            history = self._probs[first - self._probs_first : i + 1 - self._probs_first]
            cut_frame = first + vad._quietest(history, len(history))
            self._hand_out(cut_frame * FRAME, events)
            if self._silence_from is not None:
                # As the offline chunker does: the quiet stretch that may end the turn restarts at
                # the cut, so the turn's end (speech end + tail) stays after the piece just handed out.
                self._silence_from = max(self._silence_from, cut_frame)

    def _pause_ended(self, i: int, events: list[Event]) -> None:
        """Speech resumes at frame `i` after a quiet stretch that did not end the turn.

        Only now is a pause known to be inside the turn: cut at a pause while it lasts, and the
        pause that ends the turn would leave a last piece of silence alone (which Whisper may
        answer with invented words)."""
        if self._turn_start is None or self._silence_from is None:
            return
        if (i - self._silence_from) * FRAME < self._pause:
            return
        cut = (self._silence_from + i) * FRAME // 2  # the middle of the pause
        if cut - self._piece_start >= self._piece:
            self._hand_out(cut, events)

    def _hand_out(self, cut: int, events: list[Event]) -> None:
        events.append(Piece(self._audio.copy(self._piece_start, cut), self._piece_start, cut, False))
        self._piece_start = cut

    def _close(self, end: int, events: list[Event]) -> None:
        events.append(SpeechStopped(end))
        events.append(Piece(self._audio.copy(self._piece_start, end), self._piece_start, end, True))
        self._reset_region()
        self._floor = end

    def _trim(self) -> None:
        """Drop the audio (and probabilities) no turn can need any more."""
        if self._turn_start is not None:
            keep = self._piece_start
        elif self._onset is not None:
            keep = max(self._onset * FRAME - self._prefix, self._floor)
        else:
            keep = max(self._frames * FRAME - self._prefix, self._floor)
        self._audio.drop_before(keep)
        first = max(keep // FRAME, 0)
        if first > self._probs_first:
            del self._probs[: first - self._probs_first]
            self._probs_first = first
