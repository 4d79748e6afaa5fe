"""Distinct voices for diarization tests: espeak-ng sentences, committed under tests/assets/voices/.

Synthetic speech is free to ship and needs no network; CI does not need espeak-ng.
`python -m tests.voices` regenerates the clips (needs `espeak-ng`).

`meeting()` alternates two voices with short pauses and says who speaks when; `stranger()` is a
third voice that is in no meeting.
"""

from __future__ import annotations

import functools
import io
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.audio_fixtures import RATE
from tests.speech_clips import opus_bytes, trimmed

ASSETS = Path(__file__).resolve().parent / "assets" / "voices"
# clip name -> (espeak-ng voice, sentence)
CLIPS = {
    "low-1": ("en+m3", "The quarterly numbers look good, but we still need to talk about the budget."),
    "high-1": ("en+f3", "I think the design review went well, although the schedule is tight."),
    "low-2": ("en+m3", "Could you send me the slides after the meeting so I can share them?"),
    "high-2": ("en+f3", "Let us meet again on Thursday and go through the open questions."),
    "stranger": ("en+whisper", "Good afternoon everyone, this is somebody else speaking now."),
}


@functools.lru_cache(maxsize=None)
def clip(name: str) -> np.ndarray:
    return trimmed(ASSETS / f"{name}.ogg")


@dataclass
class Meeting:
    audio: np.ndarray
    # (start, end, voice) in seconds, in time order
    spans: list[tuple[float, float, str]]


def meeting(pause: float = 0.5) -> Meeting:
    """low, high, low, high: about 20 s of two alternating voices."""
    parts, spans, position = [], [], 0
    silence = np.zeros(int(pause * RATE), dtype=np.float32)
    for name in ("low-1", "high-1", "low-2", "high-2"):
        voice = clip(name)
        spans.append((position / RATE, (position + len(voice)) / RATE, name.split("-")[0]))
        parts += [voice, silence]
        position += len(voice) + len(silence)
    return Meeting(np.concatenate(parts[:-1]), spans)


def stranger() -> np.ndarray:
    return clip("stranger")


def _generate() -> None:
    from app.audio import decode

    ASSETS.mkdir(parents=True, exist_ok=True)
    for name, (voice, sentence) in CLIPS.items():
        wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", sentence], capture_output=True, check=True).stdout
        (ASSETS / f"{name}.ogg").write_bytes(opus_bytes(decode(io.BytesIO(wav))))


if __name__ == "__main__":
    _generate()
