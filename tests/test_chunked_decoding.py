"""Chunked, batched decoding in the Whisper engine: global times, batching, laziness, fallback.

The wired test models say their script in every chunk whatever the audio, so each chunk's local
times are known; the global times must be those mapped through the chunk's spans.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines import vad, whisper
from engines.base import SAMPLE_RATE, Chunking, TranscribeOptions
from engines.whisper import WhisperEngine
from tests.factories.whisper_model import long_script, build_whisper_model
from tests.speech_clips import clips, compose

GAPS = (0.6, 1.4, 0.9, 2.0, 0.7, 1.1)
# 5 segments of 3 words, 2.8 s each, back to back: 0-14 s of every chunk, crossing span joints.
SCRIPT = long_script(5, 3, 2.8)


@pytest.fixture(scope="module")
def long_script_model(tmp_path_factory):
    return build_whisper_model(tmp_path_factory.mktemp("models") / "five-segments", SCRIPT)


@pytest.fixture(scope="module")
def engine(whisper_model_dir):
    return WhisperEngine(whisper_model_dir, device="cpu", compute_type="int8", batch_size=3)


@pytest.fixture(scope="module")
def timeline():
    """About 96 s of sentences and pauses: three chunks."""
    speech = clips()
    layout: list = [1.2]
    for k in range(22):
        layout += [speech[k % len(speech)], GAPS[k % len(GAPS)]]
    return compose(layout)


def expected_global(spans, seconds: float, is_end: bool) -> float:
    """Chunk time -> original time, written out from the contract: walk the spans, clamp at the end."""
    total = sum(e - s for s, e in spans)
    position = min(max(seconds, 0.0), total / SAMPLE_RATE) * SAMPLE_RATE
    for index, (s, e) in enumerate(spans):
        length = e - s
        if position < length or (is_end and position == length) or index == len(spans) - 1:
            return (s + position) / SAMPLE_RATE
        position -= length
    raise AssertionError


def transcribe(engine, audio, **options):
    result = engine.transcribe(audio, TranscribeOptions(**options))
    return result.info, list(result.segments)


@pytest.mark.parametrize("model", ["default", "five-segments"])
def test_global_times_are_chunk_times_through_the_spans(model, whisper_model_dir, long_script_model, timeline):
    model_dir = whisper_model_dir if model == "default" else long_script_model
    engine = WhisperEngine(model_dir, device="cpu", compute_type="int8", batch_size=3)
    chunking = Chunking()
    chunks = list(vad.plan_chunks(timeline.audio, chunking))
    assert len(chunks) >= 3 and all(len(c.spans) >= 5 for c in chunks)
    _, segments = transcribe(engine, timeline.audio, chunking=chunking, word_timestamps=True)
    got = iter(segments)
    for chunk in chunks:
        # The reference: the chunk's audio alone, decoded the standard (sequential) way.
        _, local = transcribe(engine, chunk.samples(timeline.audio), word_timestamps=True)
        assert local
        for ref in local:
            seg = next(got)
            assert seg.text == ref.text
            assert seg.seek == round(chunk.start / 160)
            assert seg.start == pytest.approx(expected_global(chunk.spans, ref.start, False), abs=1e-3)
            assert seg.end == pytest.approx(expected_global(chunk.spans, ref.end, True), abs=1e-3)
            assert [w.word for w in seg.words] == [w.word for w in ref.words]
            for w, r in zip(seg.words, ref.words):
                assert w.start == pytest.approx(expected_global(chunk.spans, r.start, False), abs=0.02)
                assert w.end == pytest.approx(expected_global(chunk.spans, r.end, True), abs=0.02)
    assert next(got, None) is None
    # One speech region per sentence: every chunk's first segment starts where its first span does.
    starts = {round(c.start / SAMPLE_RATE, 3) for c in chunks}
    assert starts <= {s.start for s in segments}
    assert [s.id for s in segments] == list(range(len(segments)))


def test_segment_times_without_words_are_exact(engine, timeline, script):
    chunks = list(vad.plan_chunks(timeline.audio, Chunking()))
    _, segments = transcribe(engine, timeline.audio, chunking=Chunking())
    expected = [
        (
            round(expected_global(c.spans, s.start, False), 3),
            round(expected_global(c.spans, s.end, True), 3),
            s.text,
        )
        for c in chunks
        for s in script.transcribe
    ]
    assert [(s.start, s.end, s.text) for s in segments] == expected
    times = [t for s in segments for t in (s.start, s.end)]
    assert times == sorted(times), "segments out of time order or overlapping"


def test_times_past_a_short_chunk_are_clamped_to_its_end(engine, script):
    speech = clips()
    # A lone 2.8 s sentence, then 28 s of speech without a pause that cannot join it: the first
    # chunk is shorter than the script (4.8 s).
    timeline = compose([3.0, speech[2], 1.0, *[c for k in range(9) for c in (speech[k % 4], 0.05)], 2.0])
    chunks = list(vad.plan_chunks(timeline.audio, Chunking()))
    assert len(chunks) == 2
    short = chunks[0]
    assert short.duration < script.transcribe[-1].end
    _, segments = transcribe(engine, timeline.audio, chunking=Chunking())
    assert "".join(s.text for s in segments) == script.text() * 2  # no word dropped
    assert segments[1].start == round(expected_global(short.spans, script.transcribe[1].start, False), 3)
    assert segments[1].end == round(short.end / SAMPLE_RATE, 3)
    times = [t for s in segments for t in (s.start, s.end)]
    assert times == sorted(times) and segments[2].start == round(chunks[1].start / SAMPLE_RATE, 3)
    _, with_words = transcribe(engine, timeline.audio, chunking=Chunking(), word_timestamps=True)
    words = [w for s in with_words[:2] for w in s.words]
    assert len(words) == len(script.text().split())
    assert all(short.start / SAMPLE_RATE - 1e-3 <= w.start <= w.end <= short.end / SAMPLE_RATE + 1e-3 for w in words)


def test_noise_only_decodes_nothing(engine):
    rng = np.random.default_rng(5)
    noise = (rng.standard_normal(40 * SAMPLE_RATE) * 0.05).astype(np.float32)
    info, segments = transcribe(engine, noise, chunking=Chunking(normalise_loudness=True))
    # The wired model speaks for any audio it is given, so no segment means no decoding.
    assert segments == []
    assert info.duration == 40.0 and info.language == "en"
    info, segments = transcribe(engine, noise, chunking=Chunking(), language="de")
    assert segments == [] and info.language == "de"


class _Counting:
    """Forwards to the CTranslate2 model, noting how many chunks each step gets.

    On CPU chunks are encoded one by one (batching the encoder does not pay there), so the
    encoded chunks since the last generate are counted as one entry.
    """

    def __init__(self, model) -> None:
        self._model = model
        self.log: list[tuple[str, int]] = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    @property
    def calls(self) -> list[tuple[str, int]]:
        merged: list[tuple[str, int]] = []
        for kind, n in self.log:
            if kind == "encode" and merged and merged[-1][0] == "encode":
                merged[-1] = ("encode", merged[-1][1] + n)
            else:
                merged.append((kind, n))
        return merged

    def encode(self, features, *args, **kwargs):
        self.log.append(("encode", features.shape[0]))
        return self._model.encode(features, *args, **kwargs)

    def generate(self, encoder_output, prompts, *args, **kwargs):
        self.log.append(("generate", len(prompts)))
        return self._model.generate(encoder_output, prompts, *args, **kwargs)


@pytest.fixture()
def counting_engine(whisper_model_dir):
    engine = WhisperEngine(whisper_model_dir, device="cpu", compute_type="int8", batch_size=3)
    counter = _Counting(engine._model.model)
    engine._model.model = counter
    return engine, counter


def test_batches_are_decoded_as_segments_are_consumed(counting_engine, timeline):
    engine, counter = counting_engine
    audio = np.concatenate([timeline.audio, timeline.audio])  # ~8 chunks
    n_chunks = len(list(vad.plan_chunks(audio, Chunking())))
    assert n_chunks >= 5
    result = engine.transcribe(audio, TranscribeOptions(chunking=Chunking()))
    # Language detection reuses the first batch's encoder output: one batch of features so far.
    assert counter.calls == [("encode", 3)]
    first = next(result.segments)
    assert first.start < 2 and counter.calls == [("encode", 3), ("generate", 3)]
    rest = list(result.segments)
    sizes = [3] * (n_chunks // 3) + ([n_chunks % 3] if n_chunks % 3 else [])
    assert counter.calls == [(kind, n) for n in sizes for kind in ("encode", "generate")]
    assert len(rest) + 1 == 2 * n_chunks


def test_closing_early_stops_decoding(counting_engine, timeline):
    engine, counter = counting_engine
    result = engine.transcribe(timeline.audio, TranscribeOptions(chunking=Chunking(), language="en"))
    next(result.segments)
    result.segments.close()
    assert counter.calls == [("encode", 3), ("generate", 3)]


def test_batch_size_does_not_change_the_result(whisper_model_dir, timeline):
    outputs = []
    for batch_size in (1, 4):
        engine = WhisperEngine(whisper_model_dir, device="cpu", compute_type="int8", batch_size=batch_size)
        _, segments = transcribe(engine, timeline.audio, chunking=Chunking(), word_timestamps=True, token_logprobs=True)
        outputs.append(segments)
    assert outputs[0] == outputs[1]


def test_default_batch_size_per_device(whisper_model_dir):
    engine = WhisperEngine(whisper_model_dir, device="cpu", compute_type="int8")
    assert engine.batch_size == whisper.DEFAULT_BATCH_SIZE["cpu"]
    assert WhisperEngine(whisper_model_dir, device="cpu", compute_type="int8", batch_size=7).batch_size == 7


def test_logprobs_follow_each_chunk(engine, timeline, script):
    _, segments = transcribe(engine, timeline.audio, chunking=Chunking(), token_logprobs=True)
    assert len(segments) > 4
    for seg in segments:
        assert seg.logprobs, seg
        assert b"".join(bytes(lp.bytes) for lp in seg.logprobs).decode() == seg.text
        assert all(lp.logprob <= 0 for lp in seg.logprobs)


def test_prompt_language_and_usage(engine, timeline):
    info, segments = transcribe(engine, timeline.audio, chunking=Chunking(), prompt="Earshot meeting notes.")
    assert info.language == "en" and info.language_probability > 0.9
    assert info.prompt_tokens > 0
    assert info.audio_tokens == int(np.ceil(len(timeline.audio) / SAMPLE_RATE * 50))
    assert segments


def test_sampling_temperature_is_used_as_given(engine, timeline, script):
    _, segments = transcribe(engine, timeline.audio, chunking=Chunking(), temperature=0.5)
    assert segments and {s.temperature for s in segments} == {0.5}
    assert "".join(s.text for s in segments[:2]) == script.text()


def test_fallback_raises_the_temperature_for_all_failing_chunks(counting_engine, timeline, monkeypatch):
    engine, counter = counting_engine
    # No decode can reach an average log probability above 0: every attempt "fails".
    monkeypatch.setattr(whisper, "LOG_PROB_THRESHOLD", 0.5)
    _, segments = transcribe(engine, timeline.audio[: 40 * SAMPLE_RATE], chunking=Chunking(), language="en")
    assert segments
    # All temperatures tried on the whole batch, encoded once; the kept decode is reported with
    # the last temperature, as faster-whisper does.
    assert counter.calls == [("encode", 2)] + [("generate", 2)] * len(whisper.FALLBACK_TEMPERATURES)
    assert {s.temperature for s in segments} == {1.0}


def test_fallback_decodes_only_the_failing_chunks_again(counting_engine, timeline, monkeypatch):
    engine, counter = counting_engine
    real = whisper._ChunkedDecoding._generate

    def first_chunk_fails_once(self, encoder_output, count, temperature):
        out = real(self, encoder_output, count, temperature)
        if temperature == 0.0:
            out[0].needs_fallback = True
        return out

    monkeypatch.setattr(whisper._ChunkedDecoding, "_generate", first_chunk_fails_once)
    audio = np.concatenate([timeline.audio, timeline.audio])  # two batches of three chunks
    _, segments = transcribe(engine, audio, chunking=Chunking(), language="en")
    # Batch 1: three chunks; the first one alone decoded again at 0.2, from the same encoding.
    assert counter.calls[:4] == [("encode", 3), ("generate", 3), ("generate", 1), ("encode", 3)]
    by_chunk = {}
    for s in segments:
        by_chunk.setdefault(s.seek, set()).add(s.temperature)
    temps = [by_chunk[k] for k in sorted(by_chunk)]
    assert temps[0] == {0.2} and temps[1] == {0.0} and temps[3] == {0.2}
