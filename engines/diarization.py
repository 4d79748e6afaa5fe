"""Speaker diarization with pyannote.audio, loaded from a local pipeline folder, never the hub.

The folder has the layout of `pyannote/speaker-diarization-community-1`: `config.yaml` whose
sub-models are `$model/<subfolder>` references (segmentation, embedding, plda folders next to
it). Audio is handed to pyannote as an in-memory waveform, a view of the caller's array, so
pyannote's own file decoders are never used and no extra copy of a long recording is made.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from engines import speakers
from engines.base import SAMPLE_RATE, Diarization, Turn
from engines.store import ModelNotFound

# The sub-models a SpeakerDiarization config names; each must be local.
_MODEL_PARAMS = ("segmentation", "embedding", "plda")
# Shorter audio has no speech turns worth reporting (and pyannote rejects an empty waveform).
MIN_DIARIZE_SAMPLES = SAMPLE_RATE // 10
# WeSpeaker's fbank and ResNet need a few frames; references are 2-10 s anyway.
MIN_EMBED_SAMPLES = SAMPLE_RATE // 10


def pick_torch_device(device: str, device_index: int = 0):
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", device_index) if device == "cuda" else torch.device("cpu")


def check_local_config(pipeline_dir: Path) -> None:
    """Refuse a pipeline whose config would fetch a sub-model from the hub.

    pyannote resolves `$model/<subfolder>` against the pipeline folder; any other string that is
    not an existing path is a hub repo id (pyannote 3.x configs name `pyannote/segmentation-3.0`).
    """
    import yaml

    config_file = pipeline_dir / "config.yaml"
    if not config_file.is_file():
        raise ModelNotFound(f"Diarization model {pipeline_dir} has no config.yaml (expected a pyannote pipeline folder).")
    try:
        config = yaml.safe_load(config_file.read_text()) or {}
        params = config["pipeline"].get("params") or {}
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as exc:
        raise ModelNotFound(f"Diarization model {pipeline_dir}: unreadable config.yaml ({exc}).") from None
    for key in _MODEL_PARAMS:
        ref = params.get(key)
        if not isinstance(ref, str):
            continue
        if ref.startswith("$model/"):
            target = pipeline_dir / ref.removeprefix("$model/").split("@")[0]
        else:
            target = Path(ref) if Path(ref).is_absolute() else pipeline_dir / ref
        if not target.exists():
            raise ModelNotFound(
                f"Diarization model {pipeline_dir}: config.yaml names {key} {ref!r}, which is not in the folder. "
                f"Copy the {key} model into {pipeline_dir / key} and refer to it as `$model/{key}`."
            )


class DiarizationStopped(Exception):
    """`diarize` gave up because its caller no longer wants the result."""


class PyannoteDiarizer:
    """A pyannote SpeakerDiarization pipeline, loaded once and shared by all requests."""

    def __init__(
        self,
        pipeline_dir: Path,
        *,
        device: str = "auto",
        device_index: int = 0,
        match_threshold: float = speakers.DEFAULT_MATCH_THRESHOLD,
    ) -> None:
        # pyannote.audio 4 reports usage to its servers unless told not to; this server never does.
        # Hub access needs no switch here: every sub-model is a local path (check_local_config).
        os.environ["PYANNOTE_METRICS_ENABLED"] = "0"
        self.pipeline_dir = Path(pipeline_dir)
        check_local_config(self.pipeline_dir)

        from pyannote.audio import Pipeline

        pipeline = Pipeline.from_pretrained(self.pipeline_dir)
        if pipeline is None or not hasattr(pipeline, "_embedding"):
            raise ModelNotFound(f"Diarization model {self.pipeline_dir} is not a speaker-diarization pipeline with an embedding model.")
        self.device = pick_torch_device(device, device_index)
        pipeline.to(self.device)
        self._pipeline = pipeline
        self._embedding = pipeline._embedding
        self.match_threshold = match_threshold
        # The pipeline keeps per-call state and already uses every core (or the GPU): one call at a time.
        self._lock = threading.Lock()

    def close(self) -> None:
        self._pipeline = self._embedding = None
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()

    def diarize(
        self, audio: np.ndarray, *, embed_speakers: bool = True, should_stop: Callable[[], bool] | None = None
    ) -> Diarization:
        import torch

        audio = _as_waveform(audio)
        duration = len(audio) / SAMPLE_RATE
        if len(audio) < MIN_DIARIZE_SAMPLES:
            return Diarization(turns=[], embeddings={})
        # (channel, time) view of the caller's array: pyannote crops chunks out of it as it goes.
        waveform = torch.from_numpy(audio)[None]

        def hook(*args, **kwargs) -> None:
            # pyannote calls this after every batch of segmentation and embeddings.
            if should_stop is not None and should_stop():
                raise DiarizationStopped()

        with self._lock:
            output = self._pipeline({"waveform": waveform, "sample_rate": SAMPLE_RATE}, hook=hook)
        annotation = getattr(output, "exclusive_speaker_diarization", output)
        turns = []
        for segment, _, label in annotation.itertracks(yield_label=True):
            # The last chunk is zero-padded: turns may run past the end of the audio.
            start, end = round(max(0.0, float(segment.start)), 3), min(round(float(segment.end), 3), duration)
            if end > start:
                turns.append(Turn(start, end, str(label)))
        turns.sort(key=lambda t: (t.start, t.end))
        embeddings: dict[str, np.ndarray] = {}
        if embed_speakers:
            for label in dict.fromkeys(t.speaker for t in turns):
                clip = speakers.speech_of(audio, turns, label)
                if len(clip) < speakers.MIN_SPEAKER_EVIDENCE_SECONDS * SAMPLE_RATE:
                    continue  # too little speech for a voice print: the speaker keeps a letter
                embedding = self.embed(clip)
                if np.all(np.isfinite(embedding)):
                    embeddings[label] = embedding
        return Diarization(turns=turns, embeddings=embeddings)

    def embed(self, audio: np.ndarray) -> np.ndarray:
        import torch

        audio = _as_waveform(audio)
        if len(audio) < MIN_EMBED_SAMPLES:
            raise ValueError(f"audio too short to embed ({len(audio)} samples, at least {MIN_EMBED_SAMPLES})")
        with self._lock:
            embedding = self._embedding(torch.from_numpy(audio)[None, None])
        return np.asarray(embedding[0], dtype=np.float32)


def _as_waveform(audio: np.ndarray) -> np.ndarray:
    """float32, contiguous and writable (torch shares memory only with writable arrays): the
    decoder's output already is, so this copies only arrays made some other way."""
    return np.require(audio, dtype=np.float32, requirements=["C", "W"])
