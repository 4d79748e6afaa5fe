"""Server VAD on a live stream (engines.turns) on real speech with known sentence times (hibari)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from engines import vad
from engines.base import SAMPLE_RATE, Chunking
from engines.turns import Piece, SpeechStarted, SpeechStopped, TurnDetector, TurnSettings
from tests.audio_fixtures import NOT_SPEECH
from tests.real_speech import EDGE_LEVEL, SENTENCES, compose, hibari

R = SAMPLE_RATE
FRAME = vad.FRAME
DEFAULT = TurnSettings()
PREFIX = DEFAULT.prefix_padding_ms * R // 1000
TAIL = vad.TAIL_PADDING_MS * R // 1000


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    return [hibari(s) for s in SENTENCES]


def with_noise(samples: np.ndarray, dbfs: float = -60.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (samples + rng.standard_normal(len(samples)) * 10 ** (dbfs / 20)).astype(np.float32)


@pytest.fixture(scope="module")
def conversation(speech):
    """About 27 s: six sentences, pauses of 0.8 to 1.5 s, a faint noise floor."""
    clip = compose(list(zip(SENTENCES, speech)), lead=1.0, pauses=(1.2, 0.8, 1.5, 0.9, 1.1), tail=1.0)
    clip.samples = with_noise(clip.samples)
    return clip


@pytest.fixture(scope="module")
def long_turn(speech):
    """About 26 s: seven sentences 300 ms apart, one turn at silence_duration_ms=500."""
    parts = list(zip(SENTENCES, speech)) + [(SENTENCES[0], speech[0])]
    return compose(parts, lead=1.0, pauses=(0.3,), tail=1.0)


@pytest.fixture(scope="module")
def unbroken(speech):
    """About 40 s of sentences joined without pauses, between 1 s of silence."""
    silence = np.zeros(R, np.float32)
    return np.concatenate([silence, *(speech[k % len(speech)] for k in range(12)), silence])


def fed(detector: TurnDetector, samples: np.ndarray, sizes) -> list:
    """Feed `samples` in pieces of the given sizes (cycled); events with the position they came at."""
    events, i, k = [], 0, 0
    while i < len(samples):
        n = sizes[k % len(sizes)]
        events += [(e, detector.position) for e in detector.feed(samples[i : i + n])]
        i, k = i + n, k + 1
    return events


def turns(events) -> list[tuple[int, int]]:
    starts = [e.start for e in events if isinstance(e, SpeechStarted)]
    ends = [e.end for e in events if isinstance(e, SpeechStopped)]
    assert len(starts) == len(ends)
    return list(zip(starts, ends))


def check_tiling(events, samples: np.ndarray) -> list[list[Piece]]:
    """Each turn's pieces follow each other from its start to its end, the last one final, and hold
    exactly the fed audio; returns the pieces of each turn."""
    per_turn, current, start = [], None, None
    for e in events:
        if isinstance(e, SpeechStarted):
            assert current is None, "a turn started inside a turn"
            current, start = [], e.start
        elif isinstance(e, SpeechStopped):
            assert current is not None
            end = e.end
        else:
            assert current is not None, "a piece outside a turn"
            assert e.start == (current[-1].end if current else start)
            np.testing.assert_array_equal(e.audio, samples[e.start : e.end])
            current.append(e)
            if e.final:
                assert e.end == end
                per_turn.append(current)
                current = None
    assert current is None, "a turn never ended"
    return per_turn


def test_turns_are_where_the_sentences_are(conversation):
    events = TurnDetector(DEFAULT).feed(conversation.samples)
    found = turns(events)
    assert len(found) == len(conversation.spans)
    for (start, end), (speech_start, speech_end) in zip(found, conversation.spans):
        onset_ms = ((start + PREFIX) / R - speech_start) * 1000
        stop_ms = ((end - TAIL) / R - speech_end) * 1000
        # Measured: onset +11 to +27 ms, speech end +40 to +61 ms (silero stays high a frame or two
        # after the voice stops). Allowed: one frame early to two frames late at the onset, one frame
        # early to 100 ms late at the end.
        assert -32 <= onset_ms <= 64, (speech_start, onset_ms)
        assert -32 <= stop_ms <= 100, (speech_end, stop_ms)
    pieces = check_tiling(events, conversation.samples)
    assert all(len(p) == 1 for p in pieces)  # short turns come out whole


@pytest.mark.parametrize(
    "settings",
    [DEFAULT, TurnSettings(threshold=0.7, prefix_padding_ms=900, silence_duration_ms=250)],
    ids=["default", "strict-short-silence"],
)
def test_same_turns_as_the_offline_chunker(conversation, settings):
    events = TurnDetector(settings).feed(conversation.samples)
    chunking = Chunking(settings.threshold, settings.prefix_padding_ms, settings.silence_duration_ms)
    offline = list(vad.padded_spans(conversation.samples, chunking))
    # Measured: identical to the sample (same model, same probabilities, same hysteresis).
    assert turns(events) == offline
    # 250 ms of silence also ends a turn at a gap inside a sentence: at least one turn per sentence.
    assert len(offline) >= len(conversation.spans)


@pytest.mark.parametrize("make", NOT_SPEECH.values(), ids=NOT_SPEECH.keys())
def test_no_turns_without_speech(make):
    detector = TurnDetector(DEFAULT)
    assert detector.feed(make(np.random.default_rng(7))) == []
    assert not detector.in_turn and detector.end_turn() == []


def test_a_click_of_speech_opens_no_turn(speech):
    silence = np.zeros(R, np.float32)
    click = np.concatenate([silence, speech[0][int(1.2 * R) : int(1.32 * R)], silence])
    # The VAD does fire on these 120 ms, for a few frames: the turn is held back by its length only.
    assert (np.concatenate(list(vad.speech_probabilities(click))) >= DEFAULT.threshold).sum() >= 3
    assert TurnDetector(DEFAULT).feed(click) == []
    word = np.concatenate([silence, speech[0][int(1.2 * R) : int(1.5 * R)], silence])
    assert len(turns(TurnDetector(DEFAULT).feed(word))) == 1


@pytest.mark.parametrize("sizes", [[320], [1600], "random"], ids=["20ms", "100ms", "random"])
def test_small_feeds_give_the_events_of_one_big_feed(conversation, long_turn, sizes):
    if sizes == "random":
        sizes = [int(n) for n in np.random.default_rng(3).integers(1, 5000, 200)]
    settings = TurnSettings(piece_seconds=4.0)  # several pieces in the long turn
    for samples in (conversation.samples, long_turn.samples):
        whole = TurnDetector(settings).feed(samples)
        assert [e for e, _ in fed(TurnDetector(settings), samples, sizes)] == whole
    assert sum(isinstance(e, Piece) and not e.final for e in whole) >= 3


def pause_of(sample: int, spans) -> bool:
    """Whether `sample` lies between two sentences of the clip."""
    return any(e1 * R < sample < s2 * R for (_, e1), (s2, _) in zip(spans, spans[1:]))


def silent_at(samples: np.ndarray, sample: int) -> bool:
    """Whether the 40 ms around `sample` are silence (hibari's gaps between words fade to near zero)."""
    return np.abs(samples[sample - 320 : sample + 320]).max() < EDGE_LEVEL


def test_a_long_turn_is_handed_out_at_its_pauses_while_it_goes_on(long_turn):
    events = fed(TurnDetector(DEFAULT), long_turn.samples, [1600])
    assert len(turns([e for e, _ in events])) == 1
    (pieces,) = check_tiling([e for e, _ in events], long_turn.samples)
    early = [(p, at) for p, at in events if isinstance(p, Piece) and not p.final]
    assert early, "no piece before the turn ended"
    last_sentence_start = long_turn.spans[-1][0] * R
    for piece, arrived in early:
        assert arrived < last_sentence_start  # the speaker was still talking
        assert DEFAULT.piece_seconds * R <= len(piece.audio) <= DEFAULT.max_piece_seconds * R
        assert pause_of(piece.end, long_turn.spans), piece.end / R
    assert isinstance(events[-2][0], SpeechStopped) and events[-1][0].final

    # Shorter pieces: the first pause after 4 s of audio cuts one, between sentences or at a gap
    # between words long enough for the VAD (measured: one of the three cuts is inside a sentence).
    events = TurnDetector(TurnSettings(piece_seconds=4.0)).feed(long_turn.samples)
    (pieces,) = check_tiling(events, long_turn.samples)
    assert len(pieces) >= 4
    assert all(silent_at(long_turn.samples, p.end) for p in pieces[:-1])
    assert all(len(p.audio) >= 4 * R for p in pieces[:-1])


@pytest.mark.parametrize(
    "settings", [DEFAULT, TurnSettings(piece_seconds=28.0)], ids=["default", "cut-only-at-the-limit"]
)
def test_speech_without_pauses_is_cut_within_a_whisper_window(unbroken, settings):
    events = fed(TurnDetector(settings), unbroken, [1600])
    assert len(turns([e for e, _ in events])) == 1
    (pieces,) = check_tiling([e for e, _ in events], unbroken)
    assert len(pieces) >= 2
    assert all(len(p.audio) <= settings.max_piece_seconds * R for p in pieces)
    # Forced cuts fall in the second half of the window, at its quietest point: measured, a gap
    # between words (peak within 20 ms of the cut under -60 dBFS).
    assert all(len(p.audio) >= settings.max_piece_seconds * R / 2 - FRAME for p in pieces[:-1])
    assert all(silent_at(unbroken, p.end) for p in pieces[:-1])


def test_a_commit_never_makes_a_piece_longer_than_the_limit(unbroken):
    settings = TurnSettings(max_piece_seconds=2.0)
    detector = TurnDetector(settings)
    rng = np.random.default_rng(5)
    i, longest = 0, 0
    while i < 16 * R:
        n = int(rng.integers(1, 700))
        detector.feed(unbroken[i : i + n])
        i += n
        if detector.in_turn:  # commit here, on a copy, and carry on
            events = copy.deepcopy(detector).end_turn()
            assert events[-1].final and events[-1].end == i
            longest = max(longest, len(events[-1].audio))
    assert settings.max_piece_seconds * R - FRAME < longest <= settings.max_piece_seconds * R


def test_end_turn_closes_the_open_turn_where_the_stream_is(conversation):
    samples = conversation.samples
    detector = TurnDetector(DEFAULT)
    assert detector.end_turn() == []
    commit = int(2.5 * R) + 100  # inside the first sentence, not on a frame boundary
    (started,) = detector.feed(samples[:commit])
    assert isinstance(started, SpeechStarted) and detector.in_turn
    stopped, piece = detector.end_turn()
    assert stopped == SpeechStopped(commit)
    assert (piece.start, piece.end, piece.final) == (started.start, commit, True)
    np.testing.assert_array_equal(piece.audio, samples[started.start : commit])
    assert not detector.in_turn and detector.end_turn() == []

    # The sentence goes on: a new turn opens right at the commit, not before it.
    rest = detector.feed(samples[commit:])
    assert detector.position == len(samples)
    found = turns(rest)
    assert found[0][0] == commit
    assert found[1:] == turns(TurnDetector(DEFAULT).feed(samples))[1:]
    check_tiling(rest, samples)


def test_clear_drops_the_open_turn_and_its_audio(conversation):
    samples = conversation.samples
    detector = TurnDetector(DEFAULT)
    cleared = int(2.5 * R) + 7
    assert [type(e) for e in detector.feed(samples[:cleared])] == [SpeechStarted]
    detector.clear()
    assert not detector.in_turn and detector.buffered == 0 and detector.position == cleared
    rest = detector.feed(samples[cleared:])
    found = turns(rest)
    # The first sentence resumes as a turn of its own from the clear on; the others are unchanged.
    assert found[0][0] >= cleared
    assert found[1:] == turns(TurnDetector(DEFAULT).feed(samples))[1:]
    check_tiling(rest, samples)


def test_memory_stays_bounded_on_endless_input(unbroken):
    rng = np.random.default_rng(11)
    detector = TurnDetector(DEFAULT)
    most = 0
    for second in range(600):  # ten minutes, alternating faint noise and digital silence
        level = 10 ** (-50 / 20) if second % 20 < 10 else 0.0
        assert detector.feed((rng.standard_normal(R) * level).astype(np.float32)) == []
        most = max(most, detector.buffered)
    assert detector.position == 600 * R
    assert most <= PREFIX + FRAME  # the prefix padding and the part of a frame not yet scored

    # During a turn: what was not handed out yet, at most a piece's worth (plus a frame and a feed).
    detector = TurnDetector(DEFAULT)
    most = 0
    for i in range(0, len(unbroken), 1600):
        detector.feed(unbroken[i : i + 1600])
        most = max(most, detector.buffered)
    assert most > DEFAULT.piece_seconds * R  # it did hold a long stretch of speech
    assert most <= DEFAULT.max_piece_seconds * R + FRAME + 1600


def test_settings_out_of_range_are_refused():
    for bad in (
        TurnSettings(threshold=1.5),
        TurnSettings(silence_duration_ms=-1),
        TurnSettings(max_piece_seconds=0.05),
        TurnSettings(piece_seconds=0),
    ):
        with pytest.raises(ValueError):
            TurnDetector(bad)
