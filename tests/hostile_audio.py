"""Broken and adversarial audio, made in the tests: every container truncated and corrupted,
hand-crafted WAV headers with absurd fields, and decompression bombs (hours of digital silence
in a few kilobytes, or a sample rate so low that each stored sample turns into thousands).

Valid files come from PyAV (`tests.audio_fixtures.encode`) and are then cut or damaged; the
headers and bombs are written byte by byte, because no encoder produces them.
"""

from __future__ import annotations

import functools
import io
import random
import struct

import av
import numpy as np

from tests.audio_fixtures import CONTAINERS, encode, speechlike

EXTENSIONS = tuple(CONTAINERS)


@functools.cache
def valid(ext: str, seconds: float = 2.0) -> bytes:
    return encode(speechlike(seconds, seed=7), ext)


def truncations(ext: str) -> list[tuple[str, bytes]]:
    """The valid file cut inside its magic, its header, its first packet, and near its end."""
    data = valid(ext)
    cuts = sorted({0, 1, 4, 12, 44, 100, 400, len(data) // 2, len(data) - 1})
    return [(f"cut{n}", data[:n]) for n in cuts if n < len(data)]


def corrupted(data: bytes, seed: int, flips: int = 64, keep_head: int = 0) -> bytes:
    """`flips` random bytes overwritten, after the first `keep_head` bytes."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(flips):
        if len(out) <= keep_head:
            break
        out[rng.randrange(keep_head, len(out))] = rng.randrange(256)
    return bytes(out)


def corruptions(ext: str) -> list[tuple[str, bytes]]:
    data = valid(ext)
    return [
        # Damage inside the header (the demuxer's problem) and only inside the payload (the decoder's).
        ("header-noise", data[:8] + corrupted(data[8:64], seed=2) + data[64:]),
        ("payload-noise", corrupted(data, seed=3, flips=256, keep_head=min(len(data) // 4, 4096))),
        ("zeroed-middle", data[: len(data) // 3] + bytes(len(data) // 3) + data[2 * len(data) // 3 :]),
        ("shuffled-blocks", _shuffled_blocks(data, seed=4)),
        ("doubled", data + data),
    ]


def _shuffled_blocks(data: bytes, seed: int, block: int = 512) -> bytes:
    head, body = data[:block], data[block:]
    blocks = [body[i : i + block] for i in range(0, len(body), block)]
    random.Random(seed).shuffle(blocks)
    return head + b"".join(blocks)


def wav(
    rate: int = 16000,
    channels: int = 1,
    bits: int = 16,
    data: bytes = b"",
    *,
    fmt_tag: int = 1,
    data_size: int | None = None,
    riff_size: int | None = None,
    block_align: int | None = None,
    byte_rate: int | None = None,
) -> bytes:
    """A RIFF/WAVE file whose header says whatever it is told to, true or not."""
    align = channels * bits // 8 if block_align is None else block_align
    rate_bytes = rate * channels * bits // 8 if byte_rate is None else byte_rate
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate & 0xFFFFFFFF, rate_bytes & 0xFFFFFFFF, align & 0xFFFF, bits)
    size = len(data) if data_size is None else data_size
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size & 0xFFFFFFFF) + data
    riff = 4 + len(chunks) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", riff & 0xFFFFFFFF) + b"WAVE" + chunks


def pcm16(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    mono = (speechlike(seconds, seed=3, rate=rate) * 32767).astype("<i2")
    return np.repeat(mono[:, None], channels, axis=1).tobytes()


def float_wav(samples: np.ndarray, rate: int = 16000) -> bytes:
    return wav(rate, 1, 32, samples.astype("<f4").tobytes(), fmt_tag=3)


def crafted_wavs() -> list[tuple[str, bytes]]:
    second = pcm16(1.0)
    return [
        ("rate-0hz", wav(0, 1, 16, second)),
        ("rate-1hz", wav(1, 1, 16, pcm16(2.0))),
        ("rate-384khz", wav(384_000, 1, 16, pcm16(1.0, rate=384_000))),
        ("rate-4ghz", wav(0xFFFFFFFF, 1, 16, second)),
        ("channels-0", wav(16000, 0, 16, second)),
        ("channels-8", wav(16000, 8, 16, pcm16(1.0, channels=8))),
        ("channels-64", wav(16000, 64, 16, pcm16(0.25, channels=64))),
        ("channels-65535", wav(16000, 65535, 16, second)),
        ("bits-0", wav(16000, 1, 0, second)),
        ("bits-7", wav(16000, 1, 7, second)),
        ("block-align-0", wav(16000, 1, 16, second, block_align=0)),
        ("block-align-huge", wav(16000, 1, 16, second, block_align=0xFFFF)),
        ("byte-rate-0", wav(16000, 1, 16, second, byte_rate=0)),
        ("data-size-4gb", wav(16000, 1, 16, second, data_size=0xFFFFFFFF)),
        ("data-size-0", wav(16000, 1, 16, second, data_size=0)),
        ("riff-size-0", wav(16000, 1, 16, second, riff_size=0)),
        ("format-tag-unknown", wav(16000, 1, 16, second, fmt_tag=0x1234)),
        ("header-only", wav(16000, 1, 16, b"", data_size=32000)),
        ("float-nan-inf", float_wav(np.array([np.nan, np.inf, -np.inf, 1e38, -1e38, 0.5] * 8000))),
        ("float-huge", float_wav(speechlike(1.0) * 1e30)),
    ]


# --- FLAC written by hand: constant subframes make hours of silence cost a few bytes per frame. ---

def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


@functools.cache
def _crc16_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x8005) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


def _crc16(data: bytes) -> int:
    table, crc = _crc16_table(), 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def _utf8_number(n: int) -> bytes:
    # FLAC codes frame numbers like UTF-8 code points, extended to 36 bits.
    if n < 0x80:
        return bytes([n])
    for length, lead in ((2, 0xC0), (3, 0xE0), (4, 0xF0), (5, 0xF8), (6, 0xFC), (7, 0xFE)):
        if n < 1 << (5 * length + 1) or length == 7:
            out = []
            for _ in range(length - 1):
                out.append(0x80 | (n & 0x3F))
                n >>= 6
            return bytes([lead | n, *reversed(out)])
    raise ValueError(n)


def flac_constant(
    seconds: float, rate: int = 16000, value: int = 0, blocksize: int = 65535, declare_total: bool = False
) -> bytes:
    """Mono 16-bit FLAC holding one constant value: ~13 bytes per `blocksize` samples.

    `rate` goes into STREAMINFO only (frames say "see STREAMINFO"), so any value FLAC's 20 bits
    allow is possible, including rates no encoder would write. STREAMINFO's total is 0
    ("unknown") unless `declare_total`, so a decoder cannot refuse the file from its header.
    """
    total = int(seconds * rate)
    frames = max(1, -(-total // blocksize))
    info = struct.pack(">HH", blocksize, blocksize) + (0).to_bytes(3, "big") + (0).to_bytes(3, "big")
    packed = (rate << 44) | (0 << 41) | (15 << 36) | (total if declare_total else 0)
    info += packed.to_bytes(8, "big") + bytes(16)
    out = [b"fLaC", bytes([0x80]) + len(info).to_bytes(3, "big"), info]
    subframe = bytes([0x00]) + struct.pack(">h", value)  # type CONSTANT, no wasted bits, the value
    for number in range(frames):
        # sync + fixed blocking; blocksize from the 16-bit field; rate from STREAMINFO; mono; 16 bps.
        header = b"\xff\xf8" + bytes([0x70, 0x08]) + _utf8_number(number) + struct.pack(">H", blocksize - 1)
        header += bytes([_crc8(header)])
        frame = header + subframe
        out.append(frame + struct.pack(">H", _crc16(frame)))
    return b"".join(out)


def opus_silence(seconds: float) -> bytes:
    """Ogg Opus of digital silence: one encoded 120 ms packet muxed again and again (~3 bytes each)."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        stream.codec_context.options = {"frame_duration": "120", "application": "audio"}
        silent = av.AudioFrame.from_ndarray(np.zeros((1, 5760), dtype=np.int16), format="s16", layout="mono")
        silent.sample_rate = 48000
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=48000)
        packets = []
        for pts in range(4):
            for frame in resampler.resample(silent):
                frame.pts = pts * 5760
                packets.extend(stream.encode(frame))
        packets.extend(stream.encode(None))
        packet = packets[-2] if len(packets) > 1 else packets[-1]
        payload = bytes(packet)
        for index in range(int(seconds / 0.12) + 1):
            copy = av.Packet(payload)
            copy.stream = stream
            copy.pts = copy.dts = index * 5760
            copy.time_base = packet.time_base
            out.mux(copy)
    return buf.getvalue()


def bombs(max_seconds: float) -> list[tuple[str, str, bytes]]:
    """(name, filename, bytes) of small files that decode to far more than `max_seconds`."""
    hours = max(3 * max_seconds, 60.0)
    return [
        ("flac-silence", "bomb.flac", flac_constant(hours)),
        ("flac-silence-declared", "bomb.flac", flac_constant(hours, declare_total=True)),
        # One 65535-sample frame at 1 Hz is 18 hours: 10^9 samples once resampled to 16 kHz.
        ("flac-1hz", "slow.flac", flac_constant(hours, rate=1, value=1000)),
        ("opus-silence", "bomb.ogg", opus_silence(hours)),
        ("wav-1hz", "slow.wav", wav(1, 1, 16, pcm16(max(3 * max_seconds / 16000, 2.0)))),
    ]


def hostile_files(ext: str) -> list[tuple[str, bytes]]:
    """Everything for one container: empty, truncated, corrupted."""
    return [("empty", b""), *truncations(ext), *corruptions(ext)]
