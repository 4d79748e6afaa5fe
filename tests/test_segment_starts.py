"""A segment starts where the model says it does.

Whisper's splitting (faster-whisper's too) starts a window's only segment at the window start,
whatever its first timestamp says, so one sentence after half a second of silence started at 0.
The engine uses the stated timestamp, in sequential and in chunked decoding. And a model may lift
faster-whisper's 1 s limit on a window's first timestamp in its `generation_config.json`
(`max_initial_timestamp_index`, as in Hugging Face's Whisper generation config).

The wired models say their script in every window whatever the audio, so the times are known.
"""

from __future__ import annotations

import json

import pytest
from faster_whisper import WhisperModel

from engines import vad
from engines.base import Chunking, TranscribeOptions
from engines.whisper import MAX_INITIAL_TIMESTAMP, WhisperEngine, max_initial_timestamp
from tests.factories.whisper_model import Script, ScriptedSegment, build_whisper_model
from tests.speech_clips import clips, compose

TRANSLATED = (ScriptedSegment(0.0, 1.0, " Translated!"),)
ONE_LATE_SEGMENT = Script(transcribe=(ScriptedSegment(0.6, 2.0, " Hello there."),), translate=TRANSLATED)
LATER_THAN_ONE_SECOND = Script(
    transcribe=(ScriptedSegment(2.4, 3.6, " Late arrival"),), translate=TRANSLATED, max_initial_timestamp=30.0
)


@pytest.fixture(scope="module")
def speech():
    """One sentence with silence around it: a single VAD chunk."""
    return compose([1.0, clips()[0], 1.5])


def _segments(model_dir, audio, **options):
    engine = WhisperEngine(model_dir, device="cpu", compute_type="int8", batch_size=2)
    return list(engine.transcribe(audio, TranscribeOptions(**options)).segments)


def test_a_windows_only_segment_starts_at_its_timestamp(tmp_path, speech):
    model_dir = build_whisper_model(tmp_path / "late", ONE_LATE_SEGMENT)
    plain, _ = WhisperModel(str(model_dir), device="cpu", compute_type="int8").transcribe(speech.audio)
    assert [(s.start, s.end) for s in plain] == [(0.0, 2.0)]  # faster-whisper's own rule

    [seg] = _segments(model_dir, speech.audio)
    assert (seg.start, seg.end, seg.text) == (0.6, 2.0, " Hello there.")

    [chunk] = vad.plan_chunks(speech.audio, Chunking())
    [seg] = _segments(model_dir, speech.audio, chunking=Chunking())
    assert seg.start == round(chunk.to_original(0.6), 3) and seg.end == round(chunk.to_original(2.0, is_end=True), 3)
    assert seg.start > chunk.start / 16000


def test_word_timestamps_keep_the_first_words_start(tmp_path, speech):
    model_dir = build_whisper_model(tmp_path / "late", ONE_LATE_SEGMENT)
    [seg] = _segments(model_dir, speech.audio, word_timestamps=True)
    assert seg.words and seg.start == seg.words[0].start


def test_generation_config_lifts_the_first_timestamp_limit(tmp_path, speech):
    model_dir = build_whisper_model(tmp_path / "later", LATER_THAN_ONE_SECOND)
    assert json.loads((model_dir / "generation_config.json").read_text()) == {"max_initial_timestamp_index": 1500}
    assert max_initial_timestamp(model_dir) == 30.0
    [seg] = _segments(model_dir, speech.audio)
    assert (seg.start, seg.end, seg.text) == (2.4, 3.6, " Late arrival")
    [chunk] = vad.plan_chunks(speech.audio, Chunking())
    assert chunk.duration > 3.6
    [seg] = _segments(model_dir, speech.audio, chunking=Chunking())
    assert seg.start == round(chunk.to_original(2.4), 3) and seg.end == round(chunk.to_original(3.6, is_end=True), 3)
    with pytest.raises(ValueError, match="must start by 1.0 s"):
        build_whisper_model(tmp_path / "refused", Script(LATER_THAN_ONE_SECOND.transcribe, TRANSLATED))


@pytest.mark.parametrize(
    "content", [None, "{}", "not json", '{"max_initial_timestamp_index": -3}', '{"max_initial_timestamp_index": "50"}']
)
def test_without_a_usable_generation_config_the_limit_is_one_second(tmp_path, content):
    if content is not None:
        (tmp_path / "generation_config.json").write_text(content)
    assert max_initial_timestamp(tmp_path) == MAX_INITIAL_TIMESTAMP == 1.0
