"""Test audio made in the tests: tones and noise, encoded into every format OpenAI accepts."""

from __future__ import annotations

import io

import av
import numpy as np

RATE = 16000

# extension -> (container format, codec, sample rate)
CONTAINERS = {
    "wav": ("wav", "pcm_s16le", 16000),
    "flac": ("flac", "flac", 16000),
    "mp3": ("mp3", "libmp3lame", 16000),
    "mpga": ("mp3", "libmp3lame", 16000),
    "mpeg": ("mp3", "libmp3lame", 16000),
    "ogg": ("ogg", "libopus", 48000),
    "oga": ("ogg", "libopus", 24000),
    "webm": ("webm", "libopus", 48000),
    "m4a": ("ipod", "aac", 16000),
    "mp4": ("mp4", "aac", 16000),
}


def speechlike(seconds: float, seed: int = 0, rate: int = RATE) -> np.ndarray:
    """A modulated harmonic tone with a little noise: loud enough not to count as silence."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 720, 1440), start=1))
    signal = 0.2 * envelope * voice + 0.01 * rng.standard_normal(t.size)
    return signal.astype(np.float32)


def encode(samples: np.ndarray, ext: str = "wav", rate: int = RATE, channels: int = 1) -> bytes:
    container_format, codec, codec_rate = CONTAINERS[ext]
    buf = io.BytesIO()
    layout = "mono" if channels == 1 else "stereo"
    with av.open(buf, mode="w", format=container_format) as out:
        stream = out.add_stream(codec, rate=codec_rate)
        stream.layout = layout
        data = np.clip(samples, -1, 1)
        pcm = (data * 32767).astype(np.int16)
        if channels > 1:
            pcm = np.repeat(pcm[:, None], channels, axis=1)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout=layout, rate=codec_rate)
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def wav_bytes(seconds: float = 3.0, seed: int = 0) -> bytes:
    return encode(speechlike(seconds, seed), "wav")


def brown_noise(rng, n: int) -> np.ndarray:
    walk = np.cumsum(rng.standard_normal(n))
    walk -= np.linspace(walk[0], walk[-1], n)  # no drift, so it stays centred
    return (0.2 * walk / np.abs(walk).max()).astype(np.float32)


# 20 s of sound with no speech in it, by kind: what a VAD must find nothing in.
NOT_SPEECH = {
    "digital-silence": lambda rng: np.zeros(20 * RATE, np.float32),
    "white-noise": lambda rng: (rng.standard_normal(20 * RATE) * 0.03).astype(np.float32),
    "brown-noise": lambda rng: brown_noise(rng, 20 * RATE),
    "tone": lambda rng: (0.3 * np.sin(2 * np.pi * 440 * np.arange(20 * RATE) / RATE)).astype(np.float32),
}
