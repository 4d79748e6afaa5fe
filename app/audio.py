"""Turning an upload into 16 kHz mono float32 samples with PyAV (faster-whisper's decoder).

Uploads are hostile until decoded: the cap on decoded duration is checked before each frame is
resampled (a tiny file can claim hours, or a sample rate so low that each stored sample becomes
thousands), the samples go straight into one float32 buffer reserved at the cap's size and
trimmed at the end (never a list of chunks plus a concatenated copy), and at most
`DECODE_CONCURRENCY` decodes run at once, so uploads whose clients have already gone cannot pile
up decoded audio either.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import PurePath
from typing import IO

import av
import numpy as np

from app.errors import APIError
from engines.base import SAMPLE_RATE

log = logging.getLogger("earshot.audio")

SUPPORTED = ("flac", "m4a", "mp3", "mp4", "mpeg", "mpga", "oga", "ogg", "wav", "webm")
_SUPPORTED_TEXT = "[" + ", ".join(f"'{f}'" for f in SUPPORTED) + "]"
# Below this peak (-70 dBFS) a recording is treated as silence and never sent to the recogniser.
SILENCE_PEAK = 10 ** (-70 / 20)
# Below 4 kHz there is no intelligible speech left, and upsampling multiplies every stored
# sample (a 1 Hz FLAC frame of 65535 samples is 10^9 samples at 16 kHz); above 384 kHz nothing
# real is recorded.
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 384_000
# Multitrack recorders go to 32; decoding cost grows with every channel.
MAX_CHANNELS = 32
# Decoding is CPU-bound; more parallel decodes than cores only hold more audio in memory.
DECODE_CONCURRENCY = min(8, max(2, os.cpu_count() or 2))
_decode_slots = threading.BoundedSemaphore(DECODE_CONCURRENCY)
# First buffer size when the container does not say how long it is (grown by doubling).
_INITIAL_SECONDS = 60
# Largest buffer reserved up front (address space, not memory): 8 GiB, a cap of 37 hours.
_MAX_RESERVATION = 8 << 30


def extension(filename: str | None) -> str:
    return PurePath(filename or "").suffix.lower().lstrip(".")


def check_extension(filename: str | None) -> None:
    """A file named with an unknown extension is refused before decoding, as OpenAI does.

    A name without any extension (the Python SDK's `upload` for raw bytes) is sniffed by decoding.
    """
    ext = extension(filename)
    if ext and ext not in SUPPORTED:
        raise APIError(f"Unrecognized file format. Supported formats: {_SUPPORTED_TEXT}")


def undecodable(error_style: str) -> APIError:
    if error_style == "gpt-4o":
        return APIError(
            "This model does not support the format you provided.", param="file", code="unsupported_format"
        )
    return APIError(f"Invalid file format. Supported formats: {_SUPPORTED_TEXT}")


def too_long(limit: int) -> APIError:
    return APIError(
        f"Audio is longer than this server accepts ({limit / SAMPLE_RATE:.0f} seconds, "
        "EARSHOT_MAX_AUDIO_SECONDS); decoding stopped there.",
        param="file",
        code="audio_too_long",
    )


def unsupported_shape(what: str) -> APIError:
    return APIError(f"Unsupported audio: {what}.", param="file", code="unsupported_audio")


class Abandoned(Exception):
    """The request that wanted this audio is gone (`cancel` was set)."""


def decode(
    file: IO[bytes],
    error_style: str = "whisper",
    max_seconds: float | None = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """Decode the first audio stream, downmixed and resampled; blocking, run it in a thread.

    Setting `cancel` from another thread stops the decoding at the next frame."""
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    with _decode_slots:
        try:
            return _decode(file, error_style, limit, cancel)
        except Abandoned:
            raise
        except APIError as exc:
            error = exc
        except MemoryError:
            log.warning("out of memory decoding an upload")
            error = undecodable(error_style)
        except Exception as exc:  # PyAV raises many types for broken input; all mean "not audio we can read".
            log.info("undecodable upload: %s: %s", type(exc).__name__, exc)
            error = undecodable(error_style)
    # Raised out here without its traceback: the frames below would keep the samples decoded so
    # far (up to the cap) alive for as long as the error object lives.
    raise error.with_traceback(None)


def _decode(file: IO[bytes], error_style: str, limit: int | None, cancel: threading.Event | None) -> np.ndarray:
    file.seek(0)
    with av.open(file, mode="r", metadata_errors="ignore") as container:
        if not container.streams.audio:
            raise undecodable(error_style)
        stream = container.streams.audio[0]
        _check_shape(stream.codec_context.sample_rate, stream.codec_context.channels)
        samples = _Samples(limit, _capacity(container, limit))
        _decode_into(samples, container, stream, cancel)
    return samples.result()


def _decode_into(samples: _Samples, container, stream, cancel: threading.Event | None) -> None:
    resampler, shape = None, None
    for frame in _frames(container, stream):
        if cancel is not None and cancel.is_set():
            raise Abandoned()
        _check_shape(frame.sample_rate, frame.layout.nb_channels)
        # The cap is checked on what this frame will become, before resampling makes it real.
        samples.check(samples.size + frame.samples * SAMPLE_RATE // frame.sample_rate)
        if _unordered(frame.layout):
            frame = _averaged(frame)
        # Concatenated files change rate or layout mid-stream; the old resampler's tail goes first.
        if (frame.format.name, frame.layout.name, frame.sample_rate) != shape:
            if resampler is not None:
                samples.extend(resampler.resample(None))
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        frame.pts = None
        samples.extend(resampler.resample(frame))
    if resampler is not None:
        samples.extend(resampler.resample(None))


def _frames(container, stream):
    decoded_any = False
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            # A damaged packet inside an otherwise good file is skipped, as faster-whisper does.
            continue
        for frame in frames:
            decoded_any = True
            yield frame
    if not decoded_any and stream.duration not in (None, 0):
        raise ValueError("no decodable audio frames")


def _check_shape(rate: int | None, channels: int | None) -> None:
    # 0 (unknown) in a header is left to the decoder; the frames then carry the real values.
    if rate and not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise unsupported_shape(
            f"sample rate {rate} Hz (accepted: {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz)"
        )
    if channels and channels > MAX_CHANNELS:
        raise unsupported_shape(f"{channels} channels (at most {MAX_CHANNELS})")


def _unordered(layout) -> bool:
    # WAVs without a channel mask ("9 channels"): FFmpeg has no downmix matrix for most of these.
    return layout.nb_channels > 2 and any(channel.name == "NONE" for channel in layout.channels)


def _averaged(frame):
    """Equal-weight downmix to one float channel."""
    name = frame.format.name.rstrip("p")
    planes = frame.to_ndarray().astype(np.float32)
    if not frame.format.is_planar:
        planes = planes.reshape(-1, frame.layout.nb_channels).T
    if name == "u8":
        planes = (planes - 128.0) / 128.0
    elif name in _INT_FULL_SCALE:
        planes /= _INT_FULL_SCALE[name]
    mono = planes.mean(axis=0, dtype=np.float32)[None, :]
    out = av.AudioFrame.from_ndarray(np.ascontiguousarray(mono), format="flt", layout="mono")
    out.sample_rate = frame.sample_rate
    return out


_INT_FULL_SCALE = {"s16": 2.0**15, "s32": 2.0**31, "s64": 2.0**63}


def _capacity(container, limit: int | None) -> int:
    """Samples to allocate first. The cap, when it is a sane size: that reserves address space
    only (pages become resident as samples are written, and the final trim returns the rest), so
    the audio is never copied and never zero-filled ahead. Otherwise the declared duration (headers
    may lie: it is only a starting size) or a minute, grown by doubling."""
    if limit is not None and limit * 4 <= _MAX_RESERVATION:
        return max(1, limit)
    declared = container.duration
    seconds = declared / av.time_base if declared and declared > 0 else _INITIAL_SECONDS
    hint = int(min(seconds, 4 * 3600) * SAMPLE_RATE) + SAMPLE_RATE
    return hint if limit is None else max(1, min(hint, limit))


class _Samples:
    """Mono float32 samples in one buffer, trimmed in place (realloc) at the end, so the decoded
    audio exists once; non-finite and out-of-range values are made playable on the way in."""

    def __init__(self, limit: int | None, capacity: int) -> None:
        self.limit = limit
        self.size = 0
        try:
            self._buffer = np.empty(capacity, dtype=np.float32)
        except MemoryError:  # strict overcommit refuses the reservation: start small and grow
            self._buffer = np.empty(_INITIAL_SECONDS * SAMPLE_RATE, dtype=np.float32)

    def check(self, total: int) -> None:
        if self.limit is not None and total > self.limit:
            raise too_long(self.limit)

    def extend(self, frames) -> None:
        for frame in frames:
            chunk = frame.to_ndarray().reshape(-1)
            end = self.size + len(chunk)
            self.check(end)
            if end > len(self._buffer):
                grown = max(end, 2 * len(self._buffer))
                self._buffer.resize(grown if self.limit is None else min(grown, self.limit), refcheck=False)
            window = self._buffer[self.size : end]
            window[:] = chunk
            # NaN or infinite PCM (float WAVs can hold anything) turns the model's features into NaN.
            np.nan_to_num(window, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
            np.clip(window, -1.0, 1.0, out=window)
            del window
            self.size = end

    def result(self) -> np.ndarray:
        self._buffer.resize(self.size, refcheck=False)
        return self._buffer


def is_silent(audio: np.ndarray) -> bool:
    # max and -min rather than abs(): no temporary copy of hours of audio.
    return audio.size == 0 or max(float(audio.max()), -float(audio.min())) < SILENCE_PEAK
