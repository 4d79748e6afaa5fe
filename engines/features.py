"""Whisper's log-mel features for long audio, computed window by window in bounded memory.

faster-whisper's `FeatureExtractor` computes the spectrogram of a whole file at once, about
14.5 times the decoded audio at its peak (complex STFT, magnitudes, mel): 6.5 GB for two hours.
Its sequential decoding reads the features one 30 s window at a time, so here they are computed
on demand, in blocks of one window. The result equals faster-whisper's within float32 rounding,
with one catch: it normalises with the maximum over the whole file, so a first pass finds that
maximum block by block.
"""

from __future__ import annotations

import math
import operator
from collections import OrderedDict

import numpy as np

# Shorter audio keeps faster-whisper's own computation (peak ~14.5 x the audio: 560 MB at 10 min).
# Blocks change the width of the mel matrix product, and float32 GEMM rounding depends on it: the
# lazy features differ from faster-whisper's in the last bit of ~0.3 % of values, enough to flip
# a beam now and then (a different word in a 5-minute real recording, measured). Up to here the
# text is faster-whisper's to the character. Read at call time, so tests can move it.
LAZY_MIN_SECONDS = 600.0
# One 30 s window of frames: faster-whisper never reads more than this at once while decoding.
BLOCK_FRAMES = 3000
# Slices up to two windows become real arrays; longer ones stay lazy views.
MAX_ARRAY_FRAMES = 2 * BLOCK_FRAMES
# A window that starts mid-block touches two blocks, a two-window slice three; sequential decoding
# moves forward, so three blocks cover every read without computing a block twice.
CACHED_BLOCKS = 3
# Frames per STFT call inside a block.
STFT_FRAMES = 1000


class WindowedFeatureExtractor:
    """Stands in for a faster-whisper `FeatureExtractor`: long audio gets `LazyFeatures`, everything
    else (short audio, a `chunk_length` override, every attribute) goes to the real extractor."""

    def __init__(self, extractor, lazy_min_seconds: float | None = None) -> None:
        self._extractor = extractor
        self._lazy_min_seconds = lazy_min_seconds

    def __getattr__(self, name):
        # Via __dict__: during copying or unpickling _extractor may not exist yet.
        extractor = self.__dict__.get("_extractor")
        if extractor is None:
            raise AttributeError(name)
        return getattr(extractor, name)

    def __call__(self, waveform: np.ndarray, padding: int = 160, chunk_length: int | None = None):
        extractor = self._extractor
        threshold = LAZY_MIN_SECONDS if self._lazy_min_seconds is None else self._lazy_min_seconds
        waveform = np.asarray(waveform)
        # chunk_length changes the extractor's window size for good (faster-whisper's side effect),
        # which only the extractor itself should do.
        if (
            chunk_length is not None
            or waveform.ndim != 1
            or waveform.shape[0] <= threshold * extractor.sampling_rate
        ):
            return extractor(waveform, padding=padding, chunk_length=chunk_length)
        return LazyFeatures(Spectrogram(extractor, waveform, padding))


class Spectrogram:
    """The log-mel spectrogram of one waveform, as faster-whisper computes it, block by block.

    faster-whisper pads the waveform with `padding` zeros, reflect-pads it by n_fft // 2 on both
    sides (a centred STFT), drops the last STFT frame, then takes log10 of the clipped mel power
    and normalises with the global maximum. Every frame depends only on its own n_fft samples, so
    any run of frames can be computed from the samples under it.
    """

    def __init__(self, extractor, waveform: np.ndarray, padding: int | None = 160) -> None:
        # No copy when the audio is float32 already (faster-whisper always copies).
        self.audio = np.asarray(waveform, dtype=np.float32)
        self.n_fft = extractor.n_fft
        self.hop = extractor.hop_length
        self.mel_filters = extractor.mel_filters
        self.n_mels = self.mel_filters.shape[0]
        self._stft = extractor.stft
        self._half = self.n_fft // 2
        # The zero-padded waveform's length; one reflection must fit in it.
        self._length = self.audio.shape[0] + (padding or 0)
        if self._length <= self._half:
            raise ValueError(f"the padded waveform needs more than {self._half} samples")
        self.n_frames = (self._length + 2 * self._half - self.n_fft) // self.hop
        self._window = np.hanning(self.n_fft + 1)[:-1].astype("float32")
        self._peak: np.float32 | None = None
        self._blocks: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def peak(self) -> np.float32:
        """The largest log-mel value of the whole file (what faster-whisper's `log_spec.max()` is)."""
        if self._peak is None:
            peaks = []
            for k in range(math.ceil(self.n_frames / BLOCK_FRAMES)):
                # Decoding starts at the beginning: keep the first blocks for it.
                peaks.append(self._block(k, keep=k < CACHED_BLOCKS).max())
            self._peak = max(peaks)
        return self._peak

    def frames(self, start: int, stop: int) -> np.ndarray:
        """Normalised features of frames [start, stop), shape (n_mels, stop - start), float32."""
        if not 0 <= start <= stop <= self.n_frames:
            raise IndexError(f"frames [{start}, {stop}) outside [0, {self.n_frames})")
        peak = self.peak
        out = np.empty((self.n_mels, stop - start), dtype=np.float32)
        for k in range(start // BLOCK_FRAMES, math.ceil(stop / BLOCK_FRAMES)):
            first = k * BLOCK_FRAMES
            lo, hi = max(start, first), min(stop, first + BLOCK_FRAMES)
            out[:, lo - start : hi - start] = self._block(k)[:, lo - first : hi - first]
        # faster-whisper's normalisation, expression for expression (same float32 rounding).
        log_spec = np.maximum(out, peak - 8.0)
        return (log_spec + 4.0) / 4.0

    def _block(self, k: int, keep: bool = True) -> np.ndarray:
        """log10 of the clipped mel power of block k, before normalisation."""
        block = self._blocks.get(k)
        if block is not None:
            self._blocks.move_to_end(k)
            return block
        start = k * BLOCK_FRAMES
        stop = min(start + BLOCK_FRAMES, self.n_frames)
        block = np.empty((self.n_mels, stop - start), dtype=np.float32)
        # The STFT's intermediates take ~10 KB a frame (29 MB for a whole block): a third at a time.
        for lo in range(start, stop, STFT_FRAMES):
            hi = min(lo + STFT_FRAMES, stop)
            block[:, lo - start : hi - start] = self._log_mel(lo, hi)
        if keep:
            self._blocks[k] = block
            while len(self._blocks) > CACHED_BLOCKS:
                self._blocks.popitem(last=False)
        return block

    def _log_mel(self, start: int, stop: int) -> np.ndarray:
        samples = self._padded(start * self.hop, (stop - 1) * self.hop + self.n_fft)
        # The same calls as faster-whisper's, on these frames only (already centred, so no padding).
        stft = self._stft(
            samples, self.n_fft, self.hop, window=self._window, center=False, return_complex=True
        ).astype("complex64")
        magnitudes = np.abs(stft) ** 2
        mel_spec = self.mel_filters @ magnitudes
        return np.log10(np.clip(mel_spec, a_min=1e-10, a_max=None))

    def _padded(self, lo: int, hi: int) -> np.ndarray:
        """Samples [lo, hi) of the waveform as the STFT sees it: zero-padded, then reflect-padded."""
        half, audio = self._half, self.audio
        if lo >= half and hi - half <= audio.shape[0]:
            return audio[lo - half : hi - half]
        t = np.abs(np.arange(lo - half, hi - half))  # reflection at the start: -k -> k
        last = self._length - 1
        t = np.where(t > last, 2 * last - t, t)  # reflection at the end: last + k -> last - k
        out = np.zeros(hi - lo, dtype=np.float32)
        inside = t < audio.shape[0]  # the rest is faster-whisper's zero padding
        out[inside] = audio[t[inside]]
        return out


class LazyFeatures:
    """A (n_mels, frames) float32 array-like over a `Spectrogram`, for faster-whisper's reads:
    `shape`, and slices along time (`features[..., a:b]`, `features[:, a:b]`). Slices of up to
    MAX_ARRAY_FRAMES frames are real arrays, longer ones lazy views. Any other use goes through
    `__array__`, which computes the frames asked for (0.5 x the audio for a whole file): correct,
    if less frugal."""

    ndim = 2
    dtype = np.dtype(np.float32)

    def __init__(self, spectrogram: Spectrogram, start: int = 0, stop: int | None = None) -> None:
        self.spectrogram = spectrogram
        self.start = start
        self.stop = spectrogram.n_frames if stop is None else stop

    @property
    def shape(self) -> tuple[int, int]:
        return (self.spectrogram.n_mels, self.stop - self.start)

    def __len__(self) -> int:
        return self.spectrogram.n_mels

    def __repr__(self) -> str:
        return f"LazyFeatures(shape={self.shape}, frames [{self.start}, {self.stop}))"

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if copy is False:
            raise ValueError("LazyFeatures cannot be converted to an array without computing it")
        array = self.spectrogram.frames(self.start, self.stop)
        return array if dtype is None else array.astype(dtype, copy=False)

    def __getitem__(self, key):
        parts = _two_axes(key)
        if parts is None:
            return np.asarray(self)[key]
        mel_key, time_key = parts
        n = self.stop - self.start
        if isinstance(time_key, slice):
            start, stop, step = time_key.indices(n)
            if step == 1:
                stop = max(start, stop)
                if stop - start > MAX_ARRAY_FRAMES and _is_everything(mel_key, self.spectrogram.n_mels):
                    return LazyFeatures(self.spectrogram, self.start + start, self.start + stop)
                return self.spectrogram.frames(self.start + start, self.start + stop)[mel_key]
        elif isinstance(time_key, (int, np.integer)):
            i = operator.index(time_key)
            if not -n <= i < n:
                raise IndexError(f"index {i} is out of bounds for axis 1 with size {n}")
            i %= n
            return self.spectrogram.frames(self.start + i, self.start + i + 1)[mel_key, 0]
        # Strides, index arrays, masks: numpy's own indexing on the computed frames.
        return np.asarray(self)[mel_key, time_key]


def _two_axes(key) -> tuple[object, object] | None:
    """(mel index, time index) for a key of at most two plain parts; None for anything else."""
    parts = key if isinstance(key, tuple) else (key,)
    if any(p is None for p in parts):
        return None
    ellipses = [i for i, p in enumerate(parts) if p is Ellipsis]
    if len(ellipses) > 1:
        return None
    if ellipses:
        i = ellipses[0]
        fill = 2 - (len(parts) - 1)
        if fill < 0:
            return None
        parts = parts[:i] + (slice(None),) * fill + parts[i + 1 :]
    if len(parts) > 2:
        return None
    return tuple(parts) + (slice(None),) * (2 - len(parts))


def _is_everything(index, size: int) -> bool:
    return isinstance(index, slice) and index.indices(size) == (0, size, 1)
