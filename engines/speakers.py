"""Who said what: transcript segments attributed to diarized speakers, and speakers named.

Pure logic on engine outputs (no model here), so every rule is testable on constructed data:

* a word belongs to the speaker whose turns overlap it most; a word in no turn goes to the
  nearest turn; a recognised segment is split wherever the speaker changes between two words,
  so one segment never carries two speakers;
* speakers are labelled `A`, `B`, `C`, … in order of first appearance in the transcript;
* known speakers (reference recordings) are matched one-to-one to diarized speakers on cosine
  similarity, and only above a threshold: a voice is never renamed just because it is the closest.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from engines.base import SAMPLE_RATE, Segment, Turn, Word

# How the matching threshold was chosen. pyannote/speaker-diarization-3.1 clusters the very
# embeddings community-1 ships (WeSpeaker ResNet34-LM) by centroid linkage on unit-length
# vectors, and its tuned configuration treats two groups of speech as one speaker when their
# Euclidean distance is below 0.7045654963945799. On unit vectors d^2 = 2 - 2 cos, so that
# same-speaker boundary is cos = 1 - d^2 / 2 ~= 0.752. A reference is given a diarized
# speaker's name only when pyannote itself would have merged the two; a lower "closest wins"
# value would rename strangers. Other embedding models need their own value (the engine takes one).
_PYANNOTE_31_SAME_SPEAKER_DISTANCE = 0.7045654963945799
DEFAULT_MATCH_THRESHOLD = 1.0 - _PYANNOTE_31_SAME_SPEAKER_DISTANCE**2 / 2.0

# A speaker's embedding is computed from at most this much of its own speech (longest turns first):
# enough for a stable voice print, and a bounded cost however long the recording is.
SPEAKER_EVIDENCE_SECONDS = 30.0
# With less of its own speech than this a speaker gets no voice print (and keeps a letter): speaker
# embeddings are trained on 2 s and longer, and a fraction of a second says little about a voice.
MIN_SPEAKER_EVIDENCE_SECONDS = 1.0


@dataclass(frozen=True)
class SpeakerSegment:
    """A piece of transcript spoken by one speaker (the diarizer's label; None: no turns at all)."""

    start: float
    end: float
    text: str
    speaker: str | None


@dataclass(frozen=True)
class LabelledSegment:
    start: float
    end: float
    text: str
    # What the API shows: a known speaker's name, or a letter.
    speaker: str


# ----------------------------------------------------------------------------------------------
# Attribution
# ----------------------------------------------------------------------------------------------


def speaker_at(start: float, end: float, turns: Sequence[Turn]) -> str | None:
    """The speaker of the span [start, end]: most overlap, else the turn containing it (a point
    span), else the nearest turn. Ties go to the earlier turn. None only when there are no turns."""
    if not turns:
        return None
    overlap: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for index, turn in enumerate(turns):
        shared = min(end, turn.end) - max(start, turn.start)
        if shared > 0:
            overlap[turn.speaker] = overlap.get(turn.speaker, 0.0) + shared
            first_seen.setdefault(turn.speaker, index)
    if overlap:
        return max(overlap, key=lambda s: (overlap[s], -first_seen[s]))

    def gap(turn: Turn) -> float:
        return max(turn.start - end, start - turn.end, 0.0)

    # min() keeps the first of equal gaps: the earlier turn.
    return min(turns, key=gap).speaker


def attribute(segments: Iterable[Segment], turns: Sequence[Turn]) -> list[SpeakerSegment]:
    """Give every segment a speaker, splitting a segment where its words change speaker.

    A segment that stays with one speaker keeps its own times and text; split pieces start at
    their first word and end at their last (the first piece keeps the segment's start, the last
    its end). A segment without word timings is attributed as a whole.
    """
    turns = sorted(turns, key=lambda t: (t.start, t.end))
    out: list[SpeakerSegment] = []
    for segment in segments:
        words = [w for w in (segment.words or []) if w.word.strip()]
        if not words:
            out.append(SpeakerSegment(segment.start, segment.end, segment.text.strip(), speaker_at(segment.start, segment.end, turns)))
            continue
        runs = [
            (speaker, list(run))
            for speaker, run in itertools.groupby(words, key=lambda w: speaker_at(w.start, w.end, turns))
        ]
        if len(runs) == 1:
            out.append(SpeakerSegment(segment.start, segment.end, segment.text.strip(), runs[0][0]))
            continue
        for index, (speaker, run) in enumerate(runs):
            start = segment.start if index == 0 else run[0].start
            end = segment.end if index == len(runs) - 1 else run[-1].end
            out.append(SpeakerSegment(start, max(start, end), _join(run), speaker))
    out.sort(key=lambda s: s.start)  # stable: pieces of one segment keep their order
    return out


def _join(words: Sequence[Word]) -> str:
    return "".join(w.word for w in words).strip()


# ----------------------------------------------------------------------------------------------
# Labels
# ----------------------------------------------------------------------------------------------


def letters() -> Iterator[str]:
    """A, B, …, Z, AA, AB, … (spreadsheet columns)."""
    for size in itertools.count(1):
        for combo in itertools.product("ABCDEFGHIJKLMNOPQRSTUVWXYZ", repeat=size):
            yield "".join(combo)


class Labeller:
    """Shows each diarized speaker as its known name (`names`: diarizer label -> name) or as a
    letter in order of first appearance. Letters equal to a `reserved` name (every known speaker
    name of the request, matched or not) are skipped so an unknown voice never looks like one.
    Call it on speakers in transcript order; it remembers what it has shown."""

    def __init__(self, names: Mapping[str, str] | None = None, reserved: Iterable[str] = ()) -> None:
        self._names = dict(names or {})
        taken = set(reserved) | set(self._names.values())
        self._letters = (letter for letter in letters() if letter not in taken)
        self._shown: dict[str | None, str] = {}

    def __call__(self, speaker: str | None) -> str:
        if speaker not in self._shown:
            self._shown[speaker] = self._names[speaker] if speaker in self._names else next(self._letters)
        return self._shown[speaker]


def label(
    segments: Sequence[SpeakerSegment], names: Mapping[str, str] | None = None, reserved: Iterable[str] = ()
) -> list[LabelledSegment]:
    """`segments` with the labels a `Labeller` gives them, in order."""
    labeller = Labeller(names, reserved)
    return [LabelledSegment(s.start, s.end, s.text, labeller(s.speaker)) for s in segments]


def transcript_text(segments: Sequence[LabelledSegment]) -> str:
    """One line per turn, `<speaker>: <text>`; consecutive segments of one speaker share a line."""
    lines: list[tuple[str, list[str]]] = []
    for segment in segments:
        if not segment.text:
            continue
        if lines and lines[-1][0] == segment.speaker:
            lines[-1][1].append(segment.text)
        else:
            lines.append((segment.speaker, [segment.text]))
    return "\n".join(f"{speaker}: {' '.join(texts)}" for speaker, texts in lines)


# ----------------------------------------------------------------------------------------------
# Known speakers
# ----------------------------------------------------------------------------------------------


def cosine_similarities(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise cosine similarity of the rows of `a` and `b`; -inf where a row is zero or not finite."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        sims = (a / na) @ (b / nb).T
    return np.where(np.isfinite(sims), np.clip(sims, -1.0, 1.0), -np.inf)


def assign(similarities: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one (row, column) pairs, each at or above `threshold`, in row order.

    Among all one-to-one assignments, the one with the most pairs above the threshold wins, and
    among those the one with the highest total similarity: the Hungarian method on a cost where
    a below-threshold pair costs more than any set of good pairs can gain. A row whose best
    column is below the threshold stays unpaired even if that column is free.
    """
    sims = np.asarray(similarities, dtype=np.float64)
    if sims.size == 0:
        return []
    from scipy.optimize import linear_sum_assignment

    good = sims >= threshold
    # Similarities lie in [-1, 1], so the sums of any two assignments differ by less than
    # 2 * min(n, m); a bad pair costs more than that.
    penalty = 2.0 * min(sims.shape) + 1.0
    cost = np.where(good, -np.where(good, sims, 0.0), penalty)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if good[r, c]]


def match_known_speakers(
    speakers: Mapping[str, np.ndarray],
    references: Sequence[tuple[str, np.ndarray]],
    threshold: float = DEFAULT_MATCH_THRESHOLD,
) -> dict[str, str]:
    """diarizer label -> known name, one-to-one, for pairs whose cosine similarity is at or above
    `threshold` (see `assign`). A reference matching no speaker well enough names nobody."""
    names = [name for name, _ in references]
    if len(set(names)) != len(names):
        raise ValueError("known speaker names must be unique")
    labels = list(speakers)
    if not labels or not references:
        return {}
    sims = cosine_similarities(np.stack([speakers[s] for s in labels]), np.stack([emb for _, emb in references]))
    return {labels[r]: names[c] for r, c in assign(sims, threshold)}


def speech_of(
    audio: np.ndarray, turns: Sequence[Turn], speaker: str, max_seconds: float = SPEAKER_EVIDENCE_SECONDS
) -> np.ndarray:
    """One clip of `speaker`'s own speech: its turns, longest first, up to `max_seconds`, in time order."""
    spans = sorted(
        ((_sample(t.start, audio), _sample(t.end, audio)) for t in turns if t.speaker == speaker),
        key=lambda span: span[0] - span[1],  # longest first; sorted() is stable for equal lengths
    )
    budget = int(round(max_seconds * SAMPLE_RATE))
    chosen = []
    for begin, end in spans:
        if budget <= 0:
            break
        end = min(end, begin + budget)
        if end > begin:
            chosen.append((begin, end))
            budget -= end - begin
    chosen.sort()
    if not chosen:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate([audio[begin:end] for begin, end in chosen])


def _sample(seconds: float, audio: np.ndarray) -> int:
    return min(max(int(round(seconds * SAMPLE_RATE)), 0), len(audio))
