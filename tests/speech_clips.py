"""Real speech for VAD tests: short espeak-ng sentences, committed under tests/assets/speech/.

The clips are synthetic speech (espeak-ng), so they are free to ship and need no network; CI does
not need espeak-ng. `python -m tests.speech_clips` regenerates them (needs `espeak-ng`).

`compose` lays clips and silences out on a timeline and returns where the speech is, so tests can
check chunk boundaries against known speech regions.
"""

from __future__ import annotations

import functools
import io
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.audio_fixtures import RATE

ASSETS = Path(__file__).resolve().parent / "assets" / "speech"
SENTENCES = {
    "fox": "The quick brown fox jumps over the lazy dog near the river bank",
    "swans": "Seven silver swans swam silently across the cold lake",
    "market": "On Tuesday morning the market opened early for the farmers",
    "storm": "A sudden storm rolled over the hills and everyone ran inside",
}
# Samples whose magnitude stays below this at both ends are trimmed: a clip is speech end to end.
EDGE_LEVEL = 1e-3


def trimmed(path: Path) -> np.ndarray:
    """A committed clip, decoded, with its quiet ends trimmed."""
    from app.audio import decode

    with open(path, "rb") as f:
        samples = decode(f)
    loud = np.flatnonzero(np.abs(samples) > EDGE_LEVEL)
    return samples[loud[0] : loud[-1] + 1].copy()


@functools.lru_cache(maxsize=None)
def clip(name: str) -> np.ndarray:
    return trimmed(ASSETS / f"{name}.ogg")


def clips() -> list[np.ndarray]:
    return [clip(name) for name in SENTENCES]


@dataclass
class Timeline:
    audio: np.ndarray
    speech: list[tuple[int, int]]  # [start, end) samples of each clip
    silences: list[tuple[int, int]]  # the gaps between (and around) the clips

    def in_silence(self, sample: int) -> bool:
        return any(s <= sample <= e for s, e in self.silences)


def compose(layout: list[np.ndarray | float], noise_dbfs: float = -60.0, seed: int = 0) -> Timeline:
    """Clips (arrays) and silences (seconds) in order; silences carry faint white noise."""
    rng = np.random.default_rng(seed)
    parts, speech, silences, position = [], [], [], 0
    for item in layout:
        if isinstance(item, np.ndarray):
            part = item
            speech.append((position, position + len(part)))
        else:
            part = (rng.standard_normal(round(item * RATE)) * 10 ** (noise_dbfs / 20)).astype(np.float32)
            silences.append((position, position + len(part)))
        parts.append(part)
        position += len(part)
    return Timeline(np.concatenate(parts).astype(np.float32), speech, silences)


def opus_bytes(samples: np.ndarray, bit_rate: int = 24_000) -> bytes:
    """Committed clips are small Ogg/Opus files (CI decodes them; espeak-ng only regenerates them)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000)
        stream.layout = "mono"
        stream.bit_rate = bit_rate
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = RATE
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=48000)
        for resampled in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(resampled):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _generate() -> None:
    from app.audio import decode

    ASSETS.mkdir(parents=True, exist_ok=True)
    for name, sentence in SENTENCES.items():
        wav = subprocess.run(["espeak-ng", "--stdout", "-v", "en", sentence], capture_output=True, check=True).stdout
        (ASSETS / f"{name}.ogg").write_bytes(opus_bytes(decode(io.BytesIO(wav))))


if __name__ == "__main__":
    _generate()
