"""Realtime input audio (app.realtime.audio_formats): streamed chunks decode to exactly the samples
the HTTP endpoint decodes from a WAV of the same audio, and G.711 matches FFmpeg's decoders."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest
from scipy.signal import resample_poly

from app.audio import decode
from app.realtime.audio_formats import _TABLES, FORMATS, InputAudio, encode_g711
from tests.real_speech import hibari
from tests.realtime_client import ffmpeg_wav

LAWS = {"pcmu": ("pcm_mulaw", "mulaw", 7), "pcma": ("pcm_alaw", "alaw", 6)}  # codec, raw demuxer, WAV tag


def riff_chunks(data: bytes) -> dict[bytes, bytes]:
    chunks, pos = {}, 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        chunks[cid] = data[pos + 8 : pos + 8 + size]
        pos += 8 + size + size % 2
    return chunks


def ffmpeg_g711(codes: bytes, law: str) -> np.ndarray:
    """FFmpeg's pcm_mulaw / pcm_alaw decoder on raw codes, no resampling."""
    with av.open(io.BytesIO(codes), format=LAWS[law][1]) as container:
        return np.concatenate([f.to_ndarray().reshape(-1) for p in container.demux() for f in p.decode()])


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return hibari("The quick brown fox jumps over the lazy dog near the river bank.")


def int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1, 1) * 32767).astype(np.int16)


@pytest.mark.parametrize("law", LAWS)
def test_g711_tables_are_ffmpegs_decoding_of_every_code(law):
    expected = ffmpeg_g711(bytes(range(256)), law)
    assert expected.dtype == np.int16 and len(expected) == 256
    np.testing.assert_array_equal(_TABLES[law], expected)


@pytest.mark.parametrize("law", LAWS)
def test_g711_round_trip_error_is_within_half_a_step(law):
    x = np.arange(-32768, 32768, dtype=np.int16)
    ours = _TABLES[law][np.frombuffer(encode_g711(x, law), np.uint8)].astype(np.int64)
    error = np.abs(ours - x)
    # G.711 keeps 4 mantissa bits: half a step is at most 1/32 of the magnitude, plus the finest step.
    assert np.all(error <= 8 + np.abs(x.astype(np.int64)) / 32)
    # Nearest level: never worse than FFmpeg's own encoder (which rounds at 14 bits) on any sample.
    theirs = _TABLES[law][np.frombuffer(riff_chunks(ffmpeg_wav(x, 8000, LAWS[law][0]))[b"data"], np.uint8)]
    assert np.all(error <= np.abs(theirs.astype(np.int64) - x))


def test_unknown_law_and_format_are_refused():
    with pytest.raises(ValueError):
        encode_g711(np.zeros(4, np.int16), "g722")
    with pytest.raises(ValueError):
        InputAudio("audio/opus")
    assert {f: InputAudio(f).bytes_per_second for f in FORMATS} == {
        "audio/pcm": 48000, "audio/pcmu": 8000, "audio/pcma": 8000
    }


def streamed(fmt: str, payload: bytes, rng, largest: int) -> np.ndarray:
    decoder = InputAudio(fmt)
    out, i = [], 0
    while i < len(payload):
        n = int(rng.integers(1, largest + 1))
        out.append(decoder.decode(payload[i : i + n]))
        i += n
    out.append(decoder.flush())
    return np.concatenate(out)


def payloads(speech: np.ndarray):
    """(format, the bytes a client would send, a WAV of the same audio) for each realtime format."""
    pcm24 = int16(resample_poly(speech, 3, 2))
    container = ffmpeg_wav(pcm24, 24000, "pcm_s16le")
    yield "audio/pcm", riff_chunks(container)[b"data"], container
    pcm8 = int16(resample_poly(speech, 1, 2))
    for law, (codec, _, tag) in LAWS.items():
        container = ffmpeg_wav(pcm8, 8000, codec)
        assert struct.unpack("<H", riff_chunks(container)[b"fmt "][:2])[0] == tag
        yield f"audio/{law}", riff_chunks(container)[b"data"], container


@pytest.mark.parametrize("largest", [9, 3000])
def test_streamed_chunks_decode_exactly_as_the_upload_path(speech, largest):
    rng = np.random.default_rng(largest)
    for fmt, payload, container in payloads(speech):
        batch = decode(io.BytesIO(container))
        ours = streamed(fmt, payload, rng, largest)
        # Measured: identical samples, count and values (same swr filter, its state carried over).
        assert len(ours) == len(batch), fmt
        np.testing.assert_array_equal(ours, batch, err_msg=fmt)
        assert abs(len(ours) - len(speech)) <= 2  # and it is the clip, at 16 kHz


def test_odd_byte_waits_for_the_next_chunk(speech):
    payload = int16(speech[:4000]).astype("<i2").tobytes()
    whole = InputAudio("audio/pcm")
    expected = np.concatenate([whole.decode(payload), whole.flush()])
    split = InputAudio("audio/pcm")
    first = split.decode(payload[:1001])
    middle = split.decode(payload[1001:1002])  # completes the half sample held back
    got = np.concatenate([first, middle, split.decode(payload[1002:]), split.flush()])
    np.testing.assert_array_equal(got, expected)
    assert len(InputAudio("audio/pcm").decode(b"\x01")) == 0


def test_flush_ends_a_turn_and_the_next_starts_fresh(speech):
    payload = encode_g711(int16(resample_poly(speech, 1, 2)), "pcmu")
    one = InputAudio("audio/pcmu")
    first = np.concatenate([one.decode(payload), one.flush()])
    second = np.concatenate([one.decode(payload), one.flush()])
    # No filter state leaks from the first turn into the second: both decode the same.
    np.testing.assert_array_equal(first, second)
    assert len(first) == 2 * len(payload)
    assert len(one.flush()) == 0
