"""Window-by-window log-mel features (engines/features.py) against faster-whisper's whole-file ones.

The lazy features must equal faster-whisper's `FeatureExtractor` output wherever they are read
(within float32 rounding: blocks change only the matrix product's blocking), the sequential
decoding path must use them for long audio and give the same result, and their memory must not
grow like the whole-file computation's.
"""

from __future__ import annotations

import gc
import math
import tracemalloc

import numpy as np
import pytest
from faster_whisper import WhisperModel
from faster_whisper.feature_extractor import FeatureExtractor

from engines import features
from engines.base import TranscribeOptions
from engines.features import BLOCK_FRAMES, LazyFeatures, Spectrogram, WindowedFeatureExtractor
from engines.whisper import WhisperEngine
from tests.audio_fixtures import RATE, speechlike
from tests.factories.whisper_model import DEFAULT_SCRIPT, expected_segments

TOLERANCE = dict(rtol=1e-6, atol=1e-6)
# Odd lengths: a partial last block, one sample either side of a frame edge, whole blocks; and,
# without zero padding, the end reflection reaching back into the audio.
CASES = [
    (95 * RATE + 37, 160),
    (95 * RATE + 159, 160),
    (95 * RATE + 161, 160),
    (90 * RATE - 160, 160),
    (95 * RATE + 37, 0),
]
# 3.5 minutes, 7 windows, decoded lazily under a lowered threshold.
LONG_SECONDS = 210
LAZY_MIN_SECONDS = 60.0


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor()


@pytest.fixture(scope="module")
def long_audio():
    return speechlike(LONG_SECONDS, seed=7)


def shaped_audio(length: int, seed: int) -> np.ndarray:
    """Speech-like audio with a silence (where faster-whisper's floor, peak - 8, applies) and the
    loudest part last, so the normalisation needs the maximum of the last block."""
    samples = speechlike(length / RATE + 0.01, seed=seed)[:length]
    samples[10 * RATE : 12 * RATE] = 0
    samples[-20 * RATE :] *= 4
    return samples


def lazy_and_eager(extractor, samples, padding=160):
    return LazyFeatures(Spectrogram(extractor, samples, padding)), extractor(samples, padding=padding)


@pytest.mark.parametrize("length, padding", CASES)
def test_slices_equal_whole_file_features(extractor, length, padding):
    lazy, eager = lazy_and_eager(extractor, shaped_audio(length, seed=length), padding)
    assert eager.argmax() % eager.shape[1] > 2 * BLOCK_FRAMES and np.isclose(eager.min(), eager.max() - 2.0)
    assert lazy.shape == eager.shape and lazy.ndim == eager.ndim == 2
    n = eager.shape[1]
    assert n > 3 * BLOCK_FRAMES - 10
    # start, middle, end, a window across each block edge, a window past the end, single frames
    for a, b in [(0, 3000), (4000, 7000), (2999, 3001), (2900, 5900), (5000, 11000), (n - 10, n), (n - 1000, n + 3000)]:
        got = lazy[:, a:b]
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        np.testing.assert_allclose(got, eager[:, a:b], **TOLERANCE)
    np.testing.assert_allclose(lazy[..., -10:], eager[..., -10:], **TOLERANCE)
    np.testing.assert_allclose(lazy[:, 3000], eager[:, 3000], **TOLERANCE)
    np.testing.assert_allclose(lazy[17, 2990:3010], eager[17, 2990:3010], **TOLERANCE)
    np.testing.assert_allclose(np.asarray(lazy), eager, **TOLERANCE)


def test_long_slices_are_lazy_views_of_the_same_frames(extractor):
    lazy, eager = lazy_and_eager(extractor, shaped_audio(95 * RATE, seed=3))
    # What faster-whisper's language detection does: features[..., seek:], then [..., :3000].
    rest = lazy[..., 123:]
    assert isinstance(rest, LazyFeatures) and rest.shape == eager[..., 123:].shape
    np.testing.assert_allclose(rest[..., :3000], eager[..., 123:3123], **TOLERANCE)
    inner = rest[:, 50:-50]
    assert isinstance(inner, LazyFeatures)
    np.testing.assert_allclose(inner[:, 2900:3100], eager[:, 3073:3273], **TOLERANCE)
    np.testing.assert_allclose(np.asarray(inner), eager[:, 173:-50], **TOLERANCE)
    # Strided reads are not lazy, but still right.
    np.testing.assert_allclose(lazy[:, ::7], eager[:, ::7], **TOLERANCE)
    assert lazy[:, 500:400].shape == eager[:, 500:400].shape == (80, 0)


def test_large_v3_mels(extractor):
    extractor128 = FeatureExtractor(feature_size=128)
    lazy, eager = lazy_and_eager(extractor128, shaped_audio(round(61.3 * RATE), seed=5))
    assert lazy.shape == eager.shape == (128, eager.shape[1])
    np.testing.assert_allclose(lazy[:, 2500:5500], eager[:, 2500:5500], **TOLERANCE)


def test_wrapper_keeps_short_audio_on_faster_whispers_path(extractor):
    wrapper = WindowedFeatureExtractor(extractor, lazy_min_seconds=60)
    short = speechlike(59, seed=1)
    assert np.array_equal(wrapper(short), extractor(short))
    long = speechlike(61, seed=1)
    assert isinstance(wrapper(long), LazyFeatures)
    assert isinstance(wrapper(long, chunk_length=30), np.ndarray)
    assert (wrapper.nb_max_frames, wrapper.time_per_frame, wrapper.n_samples) == (3000, 0.01, 480000)


def test_sequential_decoding_reads_window_by_window_with_the_same_result(
    whisper_model_dir, long_audio, monkeypatch
):
    engine = WhisperEngine(whisper_model_dir, device="cpu", compute_type="int8")
    encoded: list[np.ndarray] = []
    real_encode = WhisperModel.encode

    def recording_encode(self, feats):
        encoded.append(np.array(feats))
        return real_encode(self, feats)

    spans: list[int] = []
    real_frames = Spectrogram.frames

    def recording_frames(self, start, stop):
        spans.append(stop - start)
        return real_frames(self, start, stop)

    monkeypatch.setattr(WhisperModel, "encode", recording_encode)
    monkeypatch.setattr(Spectrogram, "frames", recording_frames)
    options = TranscribeOptions(word_timestamps=True)  # language detection runs too

    monkeypatch.setattr(features, "LAZY_MIN_SECONDS", math.inf)
    eager = engine.transcribe(long_audio, options)
    eager_segments = list(eager.segments)
    eager_encoded, encoded[:] = list(encoded), []
    assert spans == []

    monkeypatch.setattr(features, "LAZY_MIN_SECONDS", LAZY_MIN_SECONDS)
    lazy = engine.transcribe(long_audio, options)
    lazy_segments = list(lazy.segments)
    # Only window-sized reads: nothing computed the whole file's features.
    assert spans and max(spans) <= BLOCK_FRAMES

    assert lazy.info == eager.info
    assert lazy_segments == eager_segments
    # Word alignment moves the segments' times, not their text: every window says the script.
    assert [s.text for s in lazy_segments] == [e.text for e in expected_segments(DEFAULT_SCRIPT, LONG_SECONDS)]
    assert len(encoded) == len(eager_encoded) > LONG_SECONDS // 30
    for got, want in zip(encoded, eager_encoded):
        np.testing.assert_allclose(got, want, **TOLERANCE)


def traced_peak(compute) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        compute()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_lazy_features_peak_memory_is_small_and_does_not_grow_with_the_audio(extractor, long_audio):
    def lazy(samples):
        feats = WindowedFeatureExtractor(extractor, LAZY_MIN_SECONDS)(samples)
        # faster-whisper's reads: language detection, then every window in turn.
        feats[..., 0:][..., :3000]
        for seek in range(0, feats.shape[-1] - 1, 3000):
            feats[:, seek : seek + 3000]

    eager_peak = traced_peak(lambda: extractor(long_audio))
    lazy_peak = traced_peak(lambda: lazy(long_audio))
    twice = np.concatenate([long_audio, long_audio])
    lazy_peak_twice = traced_peak(lambda: lazy(twice))
    assert eager_peak > 10 * long_audio.nbytes  # the problem being solved, as measured
    assert lazy_peak < eager_peak / 4
    assert lazy_peak_twice < 1.1 * lazy_peak
