"""The realtime API's input audio formats, decoded as they stream in to 16 kHz mono float32.

A realtime client appends base64 chunks in one of OpenAI's three GA formats: `audio/pcm` (16-bit
little-endian signed mono PCM at 24 kHz), `audio/pcmu` (G.711 μ-law, 8 kHz) or `audio/pcma`
(G.711 A-law, 8 kHz). G.711 is expanded to 16-bit PCM with the ITU-T G.711 tables, and every format
then goes through the same FFmpeg resampler (swr, via PyAV) that `app.audio` uses for uploads, fed
one chunk at a time with its state kept across chunks: a turn's samples are the ones the HTTP
endpoint would decode from a WAV of the same audio.
"""

from __future__ import annotations

import av
import numpy as np

from engines.base import SAMPLE_RATE

FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
_INPUT_RATES = {"audio/pcm": 24_000, "audio/pcmu": 8_000, "audio/pcma": 8_000}
_EMPTY = np.zeros(0, dtype=np.float32)


def _ulaw_table() -> np.ndarray:
    # ITU-T G.711 μ-law expansion (as in the reference g711.c and FFmpeg's pcm_mulaw decoder): codes
    # are stored inverted; 3 exponent bits shift a biased 4-bit mantissa.
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = ((((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)) - 0x84
    return np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)


def _alaw_table() -> np.ndarray:
    # ITU-T G.711 A-law expansion: even bits are inverted on the line (XOR 0x55); segment 0 is linear.
    code = np.arange(256, dtype=np.int32) ^ 0x55
    mantissa = code & 0x0F
    segment = (code & 0x70) >> 4
    magnitude = np.where(
        segment == 0, (2 * mantissa + 1) << 3, (2 * mantissa + 33) << (segment + 2)
    )
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


_TABLES = {"pcmu": _ulaw_table(), "pcma": _alaw_table()}


def encode_g711(samples_int16: np.ndarray, law: str) -> bytes:
    """16-bit PCM -> G.711 bytes ("pcmu" or "pcma"): each sample becomes the code whose level is nearest."""
    if law not in _TABLES:
        raise ValueError(f"unknown G.711 law {law!r} (expected 'pcmu' or 'pcma')")
    table = _TABLES[law]
    order = np.argsort(table, kind="stable")
    levels = table[order].astype(np.int32)
    # μ-law has two codes for 0; either decodes the same, so the duplicate level is harmless.
    midpoints = (levels[1:] + levels[:-1]) / 2
    index = np.searchsorted(midpoints, np.asarray(samples_int16, dtype=np.int32).reshape(-1), side="left")
    return order[index].astype(np.uint8).tobytes()


class InputAudio:
    """Streaming decoder for one session's input audio: bytes in, 16 kHz float32 out."""

    def __init__(self, format: str) -> None:
        if format not in FORMATS:
            raise ValueError(f"unsupported input audio format {format!r} (expected one of {', '.join(FORMATS)})")
        self.format = format
        self._rate = _INPUT_RATES[format]
        self._table = None if format == "audio/pcm" else _TABLES[format.removeprefix("audio/")]
        self.bytes_per_second = self._rate * (2 if self._table is None else 1)
        self._carry = b""  # an odd trailing byte of PCM16, completed by the next chunk
        self._resampler: av.AudioResampler | None = None

    def decode(self, payload: bytes) -> np.ndarray:
        """The new 16 kHz samples these bytes complete (the resampler holds back a few for its filter)."""
        if self._table is None:
            data = self._carry + bytes(payload) if self._carry else payload
            usable = len(data) - len(data) % 2
            self._carry = bytes(data[usable:])
            pcm = np.frombuffer(data, dtype="<i2", count=usable // 2)
        else:
            pcm = self._table[np.frombuffer(payload, dtype=np.uint8)]
        if pcm.size == 0:
            return _EMPTY
        pcm = np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = self._rate
        if self._resampler is None:
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        return _joined(self._resampler.resample(frame))

    def flush(self) -> np.ndarray:
        """The samples the resampler still holds; the next `decode` starts a fresh resampler.

        A dangling half sample of PCM16 is dropped: it cannot be decoded, and the turn it belongs to
        is over."""
        self._carry = b""
        resampler, self._resampler = self._resampler, None
        if resampler is None:
            return _EMPTY
        return _joined(resampler.resample(None))


def _joined(frames) -> np.ndarray:
    if not frames:
        return _EMPTY
    samples = np.concatenate([frame.to_ndarray().reshape(-1) for frame in frames]).astype(np.float32, copy=False)
    # The resampler's filter can overshoot full scale; uploads are clipped the same way (app.audio).
    return np.clip(samples, -1.0, 1.0, out=samples)
