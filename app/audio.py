"""Turning an upload into 16 kHz mono float32 samples with PyAV (faster-whisper's decoder)."""

from __future__ import annotations

import logging
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


def decode(file: IO[bytes], error_style: str = "whisper", max_seconds: float | None = None) -> np.ndarray:
    """Decode the first audio stream, downmixed and resampled; blocking, run it in a thread."""
    file.seek(0)
    chunks: list[np.ndarray] = []
    total = 0
    limit = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    try:
        with av.open(file, mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise undecodable(error_style)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in _frames(container):
                frame.pts = None
                for out in resampler.resample(frame):
                    total = _append(chunks, out, total, limit)
            for out in resampler.resample(None):
                total = _append(chunks, out, total, limit)
    except APIError:
        raise
    except Exception as exc:  # PyAV raises many types for broken input; all mean "not audio we can read".
        log.info("undecodable upload: %s: %s", type(exc).__name__, exc)
        raise undecodable(error_style) from None
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks)


def _frames(container):
    stream = container.streams.audio[0]
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


def _append(chunks: list[np.ndarray], frame, total: int, limit: int | None) -> int:
    samples = frame.to_ndarray().reshape(-1).astype(np.float32, copy=False)
    total += len(samples)
    if limit is not None and total > limit:
        raise APIError(
            f"Audio is longer than this server accepts ({limit / SAMPLE_RATE:.0f} seconds).",
            param="file",
            code="audio_too_long",
        )
    chunks.append(samples)
    return total


def is_silent(audio: np.ndarray) -> bool:
    return audio.size == 0 or float(np.max(np.abs(audio))) < SILENCE_PEAK
