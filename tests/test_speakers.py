"""Who said what, on constructed turns, words and embeddings: exact expectations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from engines.base import Segment, Turn, Word
from engines.speakers import (
    DEFAULT_MATCH_THRESHOLD,
    LabelledSegment,
    SpeakerSegment,
    assign,
    attribute,
    label,
    letters,
    match_known_speakers,
    speaker_at,
    speech_of,
    transcript_text,
)


def seg(start, end, text, words=None, id=0) -> Segment:
    return Segment(
        id=id, seek=0, start=start, end=end, text=text, tokens=[], temperature=0.0, avg_logprob=0.0,
        compression_ratio=1.0, no_speech_prob=0.0, words=words,
    )  # fmt: skip


def w(text, start, end) -> Word:
    return Word(text, start, end, 0.9)


# ---------------------------------------------------------------- speaker of a span


def test_most_overlap_wins_summed_over_a_speakers_turns():
    turns = [Turn(0.9, 1.3, "S0"), Turn(1.3, 1.75, "S1"), Turn(1.75, 2.1, "S0")]
    # S0 covers 0.3 + 0.25 of the word, S1 0.45: S0's turns together outweigh S1's single longer one.
    assert speaker_at(1.0, 2.0, turns) == "S0"
    assert speaker_at(1.3, 1.7, turns) == "S1"


def test_equal_overlap_goes_to_the_earlier_turn():
    turns = [Turn(0.0, 1.0, "S1"), Turn(1.0, 2.0, "S0")]
    assert speaker_at(0.5, 1.5, turns) == "S1"


def test_a_word_in_no_turn_takes_the_nearest_turn():
    turns = [Turn(0.0, 1.0, "S0"), Turn(3.0, 4.0, "S1")]
    assert speaker_at(1.2, 1.4, turns) == "S0"  # 0.2 s after S0, 1.6 s before S1
    assert speaker_at(2.7, 2.9, turns) == "S1"
    assert speaker_at(1.9, 2.1, turns) == "S0"  # halfway: the earlier turn
    assert speaker_at(5.0, 5.5, turns) == "S1"  # after the last turn


def test_a_zero_length_word_belongs_to_the_turn_around_it():
    turns = [Turn(0.0, 1.0, "S0"), Turn(1.0, 2.0, "S1")]
    assert speaker_at(1.5, 1.5, turns) == "S1"
    assert speaker_at(0.2, 0.2, turns) == "S0"


def test_no_turns_means_no_speaker():
    assert speaker_at(0.0, 1.0, []) is None


# ---------------------------------------------------------------- attribution and splitting


SENTENCE = seg(
    0.0,
    4.0,
    " Hello there. How are you?",
    [w(" Hello", 0.0, 0.5), w(" there.", 0.5, 1.0), w(" How", 2.0, 2.3), w(" are", 2.3, 2.6), w(" you?", 2.6, 3.0)],
)


def test_a_segment_is_split_where_the_speaker_changes_between_words():
    turns = [Turn(0.0, 1.5, "S0"), Turn(1.5, 4.0, "S1")]
    assert attribute([SENTENCE], turns) == [
        SpeakerSegment(0.0, 1.0, "Hello there.", "S0"),
        SpeakerSegment(2.0, 4.0, "How are you?", "S1"),
    ]


def test_a_speaker_coming_back_inside_a_segment_makes_a_third_piece():
    turns = [Turn(0.0, 0.5, "S0"), Turn(0.5, 2.2, "S1"), Turn(2.2, 4.0, "S0")]
    assert attribute([SENTENCE], turns) == [
        SpeakerSegment(0.0, 0.5, "Hello", "S0"),
        SpeakerSegment(0.5, 2.3, "there. How", "S1"),
        SpeakerSegment(2.3, 4.0, "are you?", "S0"),
    ]


def test_a_segment_with_one_speaker_keeps_its_times_and_text():
    turns = [Turn(0.0, 10.0, "S0"), Turn(10.0, 12.0, "S1")]
    assert attribute([SENTENCE], turns) == [SpeakerSegment(0.0, 4.0, "Hello there. How are you?", "S0")]


def test_words_outside_every_turn_join_the_nearest_speaker():
    # The recogniser heard words where the diarizer heard nobody (before, between, after turns).
    turns = [Turn(0.4, 0.9, "S0"), Turn(2.5, 2.8, "S1")]
    assert attribute([SENTENCE], turns) == [
        SpeakerSegment(0.0, 1.0, "Hello there.", "S0"),
        SpeakerSegment(2.0, 4.0, "How are you?", "S1"),
    ]


def test_a_segment_without_word_timings_is_attributed_as_a_whole():
    turns = [Turn(0.0, 1.0, "S0"), Turn(1.0, 5.0, "S1")]
    assert attribute([seg(0.5, 4.0, " No words here.")], turns) == [SpeakerSegment(0.5, 4.0, "No words here.", "S1")]


def test_pieces_stay_in_time_order_across_segments():
    turns = [Turn(0.0, 1.5, "S0"), Turn(1.5, 5.5, "S1"), Turn(5.5, 9.0, "S0")]
    second = seg(4.0, 7.0, " Fine, thanks.", [w(" Fine,", 4.5, 5.0), w(" thanks.", 6.0, 6.5)], id=1)
    out = attribute([SENTENCE, second], turns)
    assert [(p.start, p.end, p.speaker) for p in out] == [(0.0, 1.0, "S0"), (2.0, 4.0, "S1"), (4.0, 5.0, "S1"), (6.0, 7.0, "S0")]
    assert all(a.start <= b.start for a, b in itertools.pairwise(out))


def test_no_turns_gives_every_piece_the_same_unknown_speaker():
    assert [p.speaker for p in attribute([SENTENCE], [])] == [None]


# ---------------------------------------------------------------- labels and text


def test_letters_run_like_spreadsheet_columns():
    first = list(itertools.islice(letters(), 28))
    assert first[:3] == ["A", "B", "C"] and first[25] == "Z" and first[26:] == ["AA", "AB"]


def test_speakers_are_lettered_in_order_of_first_appearance():
    pieces = [SpeakerSegment(i, i + 1, f"t{i}", s) for i, s in enumerate(["S1", "S0", "S1", "S2"])]
    assert [p.speaker for p in label(pieces)] == ["A", "B", "A", "C"]


def test_a_matched_speaker_carries_its_name_and_letters_skip_every_known_name():
    pieces = [SpeakerSegment(i, i + 1, f"t{i}", s) for i, s in enumerate(["S1", "S0", "S2", "S0"])]
    # "A" is a known speaker's name (not matched here): an unknown voice must not look like it.
    out = label(pieces, names={"S0": "agent"}, reserved=["agent", "A"])
    assert [p.speaker for p in out] == ["B", "agent", "C", "agent"]


def test_the_transcript_has_one_line_per_turn():
    segments = [
        LabelledSegment(0, 1, "Hi.", "A"),
        LabelledSegment(1, 2, "Hello.", "A"),
        LabelledSegment(2, 3, "", "B"),
        LabelledSegment(3, 4, "Yes.", "agent"),
        LabelledSegment(4, 5, "Good.", "A"),
    ]
    assert transcript_text(segments) == "A: Hi. Hello.\nagent: Yes.\nA: Good."


# ---------------------------------------------------------------- known speakers


def unit(*xs) -> np.ndarray:
    v = np.array(xs, dtype=np.float64)
    return v / np.linalg.norm(v)


def vec_at(cos: float, axis: int = 0, other: int = 1, dim: int = 4) -> np.ndarray:
    """A unit vector whose cosine similarity with basis vector `axis` is `cos`."""
    v = np.zeros(dim)
    v[axis], v[other] = cos, np.sqrt(1 - cos**2)
    return v


def test_the_closest_voice_below_the_threshold_is_not_renamed():
    speakers = {"S0": vec_at(0.7, 0, 1), "S1": vec_at(0.1, 0, 2)}
    assert match_known_speakers(speakers, [("bob", unit(1, 0, 0, 0))], threshold=0.75) == {}
    assert match_known_speakers(speakers, [("bob", unit(1, 0, 0, 0))], threshold=0.7) == {"S0": "bob"}


def test_matching_is_one_to_one_and_maximises_the_number_of_matches():
    # cos(S0, alice) = 0.7, cos(S0, bob) = 0.65, cos(S1, alice) = 0.68, cos(S1, bob) = 0.1.
    # Greedy (best pair first) takes S0-alice and leaves bob with nobody above 0.6; the
    # assignment names both: S0-bob and S1-alice.
    alice, bob = unit(1, 0, 0, 0), unit(0, 1, 0, 0)
    s0 = np.array([0.7, 0.65, np.sqrt(1 - 0.7**2 - 0.65**2), 0.0])
    s1 = np.array([0.68, 0.1, 0.0, np.sqrt(1 - 0.68**2 - 0.1**2)])
    # Lengths do not matter, only directions.
    speakers = {"S0": 3 * s0, "S1": 0.5 * s1}
    assert match_known_speakers(speakers, [("alice", alice), ("bob", bob)], 0.6) == {"S0": "bob", "S1": "alice"}
    assert match_known_speakers(speakers, [("alice", alice), ("bob", bob)], 0.69) == {"S0": "alice"}


def test_among_equally_many_matches_the_most_similar_pairs_win():
    alice, bob = unit(1, 0, 0, 0), unit(0, 1, 0, 0)
    speakers = {"S0": vec_at(0.9, 0, 2), "S1": vec_at(0.99, 0, 3), "S2": vec_at(0.95, 1, 2)}
    assert match_known_speakers(speakers, [("alice", alice), ("bob", bob)], 0.75) == {"S1": "alice", "S2": "bob"}


def test_the_threshold_is_inclusive_and_the_default_is_pyannotes_same_speaker_boundary():
    ref = unit(1, 0, 0, 0)
    at = vec_at(DEFAULT_MATCH_THRESHOLD + 1e-9)
    below = vec_at(DEFAULT_MATCH_THRESHOLD - 1e-6)
    assert match_known_speakers({"S0": at}, [("x", ref)]) == {"S0": "x"}
    assert match_known_speakers({"S0": below}, [("x", ref)]) == {}
    # pyannote 3.1's tuned centroid distance between unit WeSpeaker embeddings, as a cosine.
    assert DEFAULT_MATCH_THRESHOLD == pytest.approx(1 - 0.7045654963945799**2 / 2)


def test_empty_or_broken_embeddings_never_match():
    ref = unit(1, 0, 0, 0)
    speakers = {"zero": np.zeros(4), "nan": np.full(4, np.nan)}
    assert match_known_speakers(speakers, [("x", ref)], threshold=-1.0) == {}
    assert match_known_speakers({}, [("x", ref)]) == {}
    assert match_known_speakers({"S0": ref}, []) == {}


def test_known_speaker_names_must_be_unique():
    with pytest.raises(ValueError):
        match_known_speakers({"S0": unit(1, 0)}, [("x", unit(1, 0)), ("x", unit(0, 1))])


def test_assign_is_exposed_for_similarity_matrices():
    sims = np.array([[0.95, 0.90], [0.80, 0.50]])
    assert assign(sims, 0.6) == [(0, 1), (1, 0)]
    assert assign(sims, 0.92) == [(0, 0)]
    assert assign(np.zeros((0, 2)), 0.5) == []


# ---------------------------------------------------------------- a speaker's own speech


def test_speech_of_takes_the_longest_turns_up_to_the_budget_in_time_order():
    audio = np.arange(5 * 16000, dtype=np.float32)
    turns = [Turn(0.0, 0.5, "S"), Turn(0.5, 1.0, "T"), Turn(1.0, 2.0, "S"), Turn(3.0, 3.25, "S")]
    clip = speech_of(audio, turns, "S", max_seconds=1.2)
    # [1.0, 2.0) whole (longest), then the first 0.2 s of [0.0, 0.5); [3.0, 3.25) is over budget.
    np.testing.assert_array_equal(clip, np.concatenate([audio[0:3200], audio[16000:32000]]))
    np.testing.assert_array_equal(speech_of(audio, turns, "T"), audio[8000:16000])
    assert speech_of(audio, turns, "nobody").size == 0
    # Turns running past the end of the audio are cut at the end.
    assert len(speech_of(audio, [Turn(4.5, 9.0, "S")], "S")) == 8000
