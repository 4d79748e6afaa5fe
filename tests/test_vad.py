"""VAD chunking (engines.vad) on real speech clips laid out with known silences."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from engines import vad
from engines.base import SAMPLE_RATE, Chunking
from tests.audio_fixtures import NOT_SPEECH
from tests.speech_clips import clips, compose

GAPS = (0.6, 1.4, 0.9, 2.0, 0.7, 1.1)


@pytest.fixture(scope="module")
def speech() -> list[np.ndarray]:
    return clips()


@pytest.fixture(scope="module")
def conversation(speech):
    """About 96 s: 22 sentences separated by pauses of 0.6 to 2 s."""
    layout: list = [1.2]
    for k in range(22):
        layout += [speech[k % len(speech)], GAPS[k % len(GAPS)]]
    return compose(layout)


def noisy(samples: np.ndarray, snr_db: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rms = np.sqrt(np.mean(samples**2))
    noise = rng.standard_normal(len(samples)) * rms * 10 ** (-snr_db / 20)
    return (samples + noise).astype(np.float32)


def seconds(regions) -> float:
    return sum(r.end - r.start for r in regions) / SAMPLE_RATE


def test_chunks_hold_at_most_30_s_and_are_cut_only_in_silence(conversation):
    chunks = list(vad.plan_chunks(conversation.audio, Chunking()))
    assert len(chunks) >= 3
    assert all(c.num_samples <= 30 * SAMPLE_RATE for c in chunks)
    # Packed close to the limit: joining stops only when the next region would not fit.
    assert all(c.duration > 25 for c in chunks[:-1])
    spans = [span for c in chunks for span in c.spans]
    assert all(e1 < s2 for (_, e1), (s2, _) in zip(spans, spans[1:])), "spans overlap or are out of order"
    for start, end in spans:
        assert conversation.in_silence(start) and conversation.in_silence(end - 1), (start, end)
    # Every sentence is inside one span: nothing is lost and no sentence is split.
    for start, end in conversation.speech:
        assert any(a <= start and end <= b for a, b in spans), (start / SAMPLE_RATE, end / SAMPLE_RATE)


def test_each_pause_longer_than_the_silence_duration_ends_a_region(conversation):
    regions = list(vad.speech_regions(conversation.audio, Chunking()))
    assert len(regions) == len(conversation.speech)
    for region, (start, end) in zip(regions, conversation.speech):
        # Onsets and ends within four 32 ms frames of the clip's first and last loud sample.
        assert abs(region.start - start) <= 4 * vad.FRAME
        assert abs(region.end - end) <= 4 * vad.FRAME


def test_longer_silence_duration_gives_fewer_longer_regions(speech):
    timeline = compose([1.0, speech[0], 0.45, speech[1], 1.6, speech[2], 0.45, speech[3], 1.0])
    counts, longest = [], []
    for silence_ms in (200, 1000, 2500):
        regions = list(vad.speech_regions(timeline.audio, Chunking(silence_duration_ms=silence_ms)))
        counts.append(len(regions))
        longest.append(max(r.end - r.start for r in regions))
    assert counts == [4, 2, 1]
    assert longest[0] < longest[1] < longest[2]


def test_higher_threshold_keeps_less_speech(speech):
    # The middle sentence is buried in noise (-9 dB SNR): only a low threshold takes it as speech.
    timeline = compose([1.0, speech[0], 1.0, noisy(speech[1], -9.0, seed=3), 1.0, speech[2], 1.0])
    by_threshold = {t: list(vad.speech_regions(timeline.audio, Chunking(threshold=t))) for t in (0.2, 0.5, 0.8)}
    assert seconds(by_threshold[0.2]) > seconds(by_threshold[0.5]) > seconds(by_threshold[0.8])
    # What a higher threshold finds lies inside what a lower one finds (hysteresis included).
    for low, high in ((0.2, 0.5), (0.5, 0.8)):
        for r in by_threshold[high]:
            assert any(q.start <= r.start and r.end <= q.end for q in by_threshold[low])
    buried = timeline.speech[1]

    def covers_buried(regions) -> bool:
        return any(r.start < buried[1] and buried[0] < r.end for r in regions)

    assert covers_buried(by_threshold[0.2]) and not covers_buried(by_threshold[0.8])
    assert len(by_threshold[0.8]) < len(by_threshold[0.2])


def test_prefix_padding_moves_chunk_starts_back(conversation):
    plain = list(vad.padded_spans(conversation.audio, Chunking(prefix_padding_ms=0)))
    padded = list(vad.padded_spans(conversation.audio, Chunking(prefix_padding_ms=500)))
    regions = list(vad.speech_regions(conversation.audio, Chunking()))
    assert len(plain) == len(padded) == len(regions)
    assert [s for s, _ in plain] == [r.start for r in regions]
    # 500 ms before each region, up to the end of the previous span (its 200 ms tail included).
    previous_ends = [0] + [e for _, e in padded[:-1]]
    assert [s for s, _ in padded] == [max(r.start - 8000, end) for r, end in zip(regions, previous_ends)]
    assert sum(s == r.start - 8000 for (s, _), r in zip(padded, regions)) > len(regions) / 2
    assert [e for _, e in plain] == [e for _, e in padded]
    first = next(vad.plan_chunks(conversation.audio, Chunking(prefix_padding_ms=500)))
    assert first.start == regions[0].start - 8000


def test_prefix_padding_stops_at_the_previous_region(speech):
    timeline = compose([1.0, speech[0], 0.5, speech[1], 1.0])
    spans = list(vad.padded_spans(timeline.audio, Chunking(prefix_padding_ms=3000, silence_duration_ms=200)))
    assert len(spans) == 2
    assert spans[0][0] == 0  # clamped at the start of the audio
    assert spans[1][0] == spans[0][1]  # clamped at the end of the previous span: no audio twice


@pytest.mark.parametrize("make", NOT_SPEECH.values(), ids=NOT_SPEECH.keys())
def test_no_speech_no_chunks(make):
    audio = make(np.random.default_rng(7))
    assert list(vad.plan_chunks(audio, Chunking(normalise_loudness=True))) == []


def test_speech_without_pauses_is_cut_into_contiguous_pieces(speech):
    layout: list = [1.0]
    for k in range(24):
        layout += [speech[k % len(speech)], 0.05]
    timeline = compose(layout)  # ~78 s of speech with no pause as long as the silence duration
    chunks = list(vad.plan_chunks(timeline.audio, Chunking(silence_duration_ms=1000)))
    assert len(chunks) >= 3
    assert all(len(c.spans) == 1 and c.num_samples <= 30 * SAMPLE_RATE for c in chunks)
    # Cut points join exactly: no sample is dropped or decoded twice.
    assert all(a.end == b.start for a, b in zip(chunks, chunks[1:]))
    assert chunks[0].start <= timeline.speech[0][0] and chunks[-1].end >= timeline.speech[-1][1]


def test_to_original_maps_through_removed_silence():
    chunk = vad.Chunk(((16000, 32000), (48000, 64000)))  # 1-2 s and 3-4 s of the original
    assert chunk.duration == 2.0
    assert chunk.to_original(0.0) == 1.0
    assert chunk.to_original(0.5) == 1.5
    assert chunk.to_original(1.0) == 3.0  # a start at the joint belongs to the later span
    assert chunk.to_original(1.0, is_end=True) == 2.0  # an end at the joint to the earlier one
    assert chunk.to_original(1.25, is_end=True) == 3.25
    assert chunk.to_original(9.0, is_end=True) == 4.0  # past the chunk's audio: its end
    assert chunk.to_original(-1.0) == 1.0


def test_chunk_samples_are_the_spans_joined_with_gain():
    audio = np.linspace(-0.5, 0.5, 64000, dtype=np.float32)
    chunk = vad.Chunk(((100, 200), (300, 350)), gain=4.0)
    out = chunk.samples(audio)
    expected = np.clip(np.concatenate([audio[100:200], audio[300:350]]) * 4.0, -1, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    assert out.dtype == np.float32 and np.abs(out).max() == 1.0


def test_loudness_gain_targets_the_gated_level():
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.01 * np.sqrt(2) * np.sin(2 * np.pi * 300 * t)).astype(np.float32)  # -40 dBFS RMS
    # Ten seconds of near-silence do not count: they are below the gates.
    quiet_and_gaps = np.concatenate([tone, np.zeros(10 * SAMPLE_RATE, np.float32), tone])
    assert 20 * np.log10(vad.loudness_gain(quiet_and_gaps)) == pytest.approx(vad.TARGET_DBFS + 40, abs=0.05)
    whisper_quiet = (tone * 1e-3).astype(np.float32)  # -100 dBFS: below the absolute gate
    assert vad.loudness_gain(whisper_quiet) == 1.0
    barely = (tone * 10 ** (-25 / 20)).astype(np.float32)  # -65 dBFS: +42 dB wanted, clipped
    assert 20 * np.log10(vad.loudness_gain(barely)) == pytest.approx(vad.GAIN_DB_RANGE[1])
    square = np.sign(np.sin(2 * np.pi * 300 * t)).astype(np.float32)  # 0 dBFS: -23 dB wanted, clipped
    assert 20 * np.log10(vad.loudness_gain(square)) == pytest.approx(vad.GAIN_DB_RANGE[0])


def test_auto_normalises_what_the_vad_and_the_recogniser_see(speech):
    timeline = compose([1.0, speech[0] * 0.05, 1.0])
    gain = vad.loudness_gain(timeline.audio)
    assert gain > 10
    (chunk,) = vad.plan_chunks(timeline.audio, Chunking(normalise_loudness=True))
    assert chunk.gain == gain
    (plain,) = vad.plan_chunks(timeline.audio, Chunking())
    assert plain.gain == 1.0
    s, e = chunk.spans[0]
    np.testing.assert_allclose(chunk.samples(timeline.audio), np.clip(timeline.audio[s:e] * gain, -1, 1), rtol=1e-6)


def test_probabilities_match_the_silero_package(conversation, tmp_path):
    """Our framing of the packaged sequence model equals silero-vad's own reference code."""
    audio = conversation.audio[: 40 * SAMPLE_RATE]
    ours = np.concatenate(list(vad.speech_probabilities(audio)))
    path = tmp_path / "audio.npy"
    np.save(path, audio)
    # In a subprocess: importing silero_vad imports torch and changes its global thread count.
    code = textwrap.dedent(
        f"""
        import json, numpy as np
        from silero_vad import load_silero_vad
        model = load_silero_vad(sequence=True)
        print(json.dumps(model.audio_forward(np.load({str(path)!r})).tolist()))
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    theirs = np.array(json.loads(proc.stdout))
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_one_shared_model_serves_threads_at_once(conversation, speech):
    inputs = [
        conversation.audio[: 30 * SAMPLE_RATE],
        np.concatenate(speech * 3),
        conversation.audio[-20 * SAMPLE_RATE :],
    ]
    serial = [np.concatenate(list(vad.speech_probabilities(a))) for a in inputs]
    with ThreadPoolExecutor(6) as pool:
        parallel = list(pool.map(lambda a: np.concatenate(list(vad.speech_probabilities(a))), inputs * 2))
    for got, want in zip(parallel, serial * 2):
        np.testing.assert_array_equal(got, want)


def test_a_streams_first_chunk_closes_at_the_first_pause_after_five_seconds(conversation):
    plain = list(vad.plan_chunks(conversation.audio, Chunking()))
    eager = list(vad.plan_chunks(conversation.audio, Chunking(), first_chunk_seconds=5.0))
    first = eager[0]
    # The first chunk holds at least 5 s of speech, and stops at the first region boundary after that.
    assert first.duration >= 5.0
    assert first.duration - (first.spans[-1][1] - first.spans[-1][0]) / SAMPLE_RATE < 5.0
    assert first.duration < plain[0].duration
    spans = [span for c in eager for span in c.spans]
    for start, end in spans:
        assert conversation.in_silence(start) and conversation.in_silence(end - 1)
    # The same audio is covered either way; only where the chunks are cut moved.
    assert sum(c.num_samples for c in eager) == sum(c.num_samples for c in plain)
    assert all(c.num_samples <= 30 * SAMPLE_RATE for c in eager)
