"""Build random-weight pyannote speaker-diarization pipelines offline, in seconds.

The folder written here has the layout of `pyannote/speaker-diarization-community-1`::

    config.yaml                       pipeline class, `$model/...` sub-model references, parameters
    segmentation/pytorch_model.bin    PyanNet (SincNet > LSTM > linear > powerset classifier)
    embedding/pytorch_model.bin       WeSpeaker ResNet34 (fbank > ResNet34 > statistics pooling > linear)
    plda/xvec_transform.npz           x-vector centring + LDA (mean1, mean2, lda)
    plda/plda.npz                     PLDA (mu, tr, psi)

and loads with `pyannote.audio.Pipeline.from_pretrained(<folder>)` like the real one. The
checkpoints are written the way pyannote's own WeSpeaker conversion script writes them.

Weights are random (PyTorch's default initialisation, seeded) with one piece of wiring: the
segmentation classifier's bias centres its logits over a little calibration audio (tones, noise,
near-silence). Without it one powerset class (typically "two speakers at once") wins on every
frame of every input, and the pipeline never sees a turn change. Centred, the decisions follow
the input: silence, one speaker, the other, both. The turns and clusters are still arbitrary:
use them to test wiring, shapes and formats, not accuracy.

What tests may rely on: the same samples always embed to the same vector, and a random ResNet
with statistics pooling maps *every* input to nearly the same direction (cosine similarity
0.93-0.995 between different recordings, voices or not), so only identical audio scores 1.

The PLDA is the neutral one (no centring, an orthonormal projection to `lda_dimension`, unit
covariances), which VBx accepts. `COMMUNITY_1` has community-1's sizes and clustering (for
realistic timings); `TEST_SIZES` is small enough that the whole pipeline runs in a few seconds
for a minute of audio on two CPU cores, and clusters with a threshold matched to the random
embeddings' spread, so a recording yields several speakers as a meeting would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

__all__ = [
    "COMMUNITY_1",
    "TEST_SIZES",
    "PipelineSizes",
    "build_pyannote_pipeline",
]

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class PipelineSizes:
    # segmentation: PyanNet
    sincnet_stride: int
    lstm_hidden: int
    lstm_layers: int
    linear_hidden: int
    linear_layers: int
    chunk_seconds: float
    # speakers the segmentation model tells apart inside one chunk (at most two at a time)
    local_speakers: int
    # hop between segmentation chunks, as a fraction of a chunk
    segmentation_step: float
    # embedding: WeSpeaker ResNet34's fbank front end
    mel_bins: int
    frame_shift_ms: int
    frame_length_ms: int
    lda_dimension: int
    clustering: str
    clustering_params: tuple[tuple[str, object], ...]
    segmentation_batch_size: int
    embedding_batch_size: int
    embedding_exclude_overlap: bool


# pyannote/speaker-diarization-community-1: segmentation-3.0 (PyanNet, 4x128 BiLSTM, 10 s chunks,
# 3 local speakers, powerset of at most 2), wespeaker-voxceleb-resnet34-LM (80 mel bins, 10 ms
# hop, 256-d), VBx clustering on a 128-d PLDA; batch sizes and parameters from its config.yaml.
COMMUNITY_1 = PipelineSizes(
    sincnet_stride=10,
    lstm_hidden=128,
    lstm_layers=4,
    linear_hidden=128,
    linear_layers=2,
    chunk_seconds=10.0,
    local_speakers=3,
    segmentation_step=0.1,
    mel_bins=80,
    frame_shift_ms=10,
    frame_length_ms=25,
    lda_dimension=128,
    clustering="VBxClustering",
    clustering_params=(("threshold", 0.6), ("Fa", 0.07), ("Fb", 0.8)),
    segmentation_batch_size=32,
    embedding_batch_size=32,
    embedding_exclude_overlap=True,
)

# The same classes and pipeline, cut down: SincNet at stride 20, one small LSTM layer, 5 s chunks
# with two local speakers, a hop of half a chunk (5x fewer chunks to embed than community-1's
# 0.1) and a coarse fbank (32 mel bins, 40 ms hop over 50 ms frames: the ResNet34 sees 10x fewer
# time-frequency cells than with 80 bins every 10 ms). Agglomerative clustering cuts at a
# Euclidean distance of 0.2 between unit embeddings (cosine 0.98), inside the random
# embeddings' spread; pyannote 3.1's tuned 0.70 would put everything in one cluster.
TEST_SIZES = replace(
    COMMUNITY_1,
    sincnet_stride=20,
    lstm_hidden=32,
    lstm_layers=1,
    linear_hidden=32,
    linear_layers=1,
    chunk_seconds=5.0,
    local_speakers=2,
    segmentation_step=0.5,
    mel_bins=32,
    frame_shift_ms=40,
    frame_length_ms=50,
    clustering="AgglomerativeClustering",
    clustering_params=(("method", "centroid"), ("min_cluster_size", 2), ("threshold", 0.2)),
)

_CONFIG = """\
dependencies:
  pyannote.audio: {version}

pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    clustering: {clustering}
    segmentation: $model/segmentation
    segmentation_step: {segmentation_step}
    segmentation_batch_size: {segmentation_batch_size}
    embedding: $model/embedding
    embedding_batch_size: {embedding_batch_size}
    embedding_exclude_overlap: {embedding_exclude_overlap}
    plda: $model/plda

params:
  clustering:
{clustering_params}
  segmentation:
    min_duration_off: 0.0
"""


def _calibration_audio(chunk_samples: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 1, chunk) chunks of harmonic tones, noise and near-silence: generic, not test audio."""
    t = np.arange(chunk_samples) / SAMPLE_RATE
    chunks = []
    for f0 in (110.0, 170.0, 240.0):
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 2.5 * t)
        chunks.append(0.2 * envelope * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 6)))
    chunks.append(0.05 * rng.standard_normal(chunk_samples))
    chunks.append(1e-4 * rng.standard_normal(chunk_samples))
    return np.stack(chunks).astype(np.float32)[:, None, :]


def _save_checkpoint(model, path: Path) -> None:
    import lightning
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(checkpoint)
    checkpoint["pytorch-lightning_version"] = lightning.__version__
    torch.save(checkpoint, path)


def _segmentation_model(sizes: PipelineSizes, rng: np.random.Generator):
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    model = PyanNet(
        sincnet={"stride": sizes.sincnet_stride},
        lstm={
            "hidden_size": sizes.lstm_hidden,
            "num_layers": sizes.lstm_layers,
            "bidirectional": True,
            "monolithic": True,
            "dropout": 0.5 if sizes.lstm_layers > 1 else 0.0,
        },
        linear={"hidden_size": sizes.linear_hidden, "num_layers": sizes.linear_layers},
    )
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=sizes.chunk_seconds,
        min_duration=sizes.chunk_seconds,
        warm_up=(0.0, 0.0),
        classes=[f"speaker#{i + 1}" for i in range(sizes.local_speakers)],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    model.build()
    model.eval()
    classifier = model.classifier
    features = []
    handle = classifier.register_forward_hook(lambda module, inputs, output: features.append(inputs[0]))
    chunk_samples = int(sizes.chunk_seconds * SAMPLE_RATE)
    with torch.inference_mode():
        classifier.bias.zero_()
        model(torch.from_numpy(_calibration_audio(chunk_samples, rng)))
        mean = features[0].reshape(-1, features[0].shape[-1]).mean(dim=0)
        classifier.bias.copy_(-(classifier.weight @ mean))
    handle.remove()
    return model


def _embedding_model(sizes: PipelineSizes):
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    model = WeSpeakerResNet34(
        num_mel_bins=sizes.mel_bins, frame_length=sizes.frame_length_ms, frame_shift=sizes.frame_shift_ms
    )
    # What pyannote's WeSpeaker conversion script sets ("duration = 5.0  # whatever").
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
    return model.eval()


def _plda(dimension: int, lda_dimension: int, rng: np.random.Generator) -> tuple[dict, dict]:
    q, _ = np.linalg.qr(rng.standard_normal((dimension, lda_dimension)))
    transform = {"mean1": np.zeros(dimension), "mean2": np.zeros(lda_dimension), "lda": q}
    plda = {"mu": np.zeros(lda_dimension), "tr": np.eye(lda_dimension), "psi": np.ones(lda_dimension)}
    return transform, plda


def build_pyannote_pipeline(out_dir: Path, sizes: PipelineSizes = TEST_SIZES, seed: int = 0) -> Path:
    """Write a random-weight pipeline folder in community-1's layout; returns `out_dir`."""
    import torch
    from pyannote.audio import __version__

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    _save_checkpoint(_segmentation_model(sizes, rng), out_dir / "segmentation" / "pytorch_model.bin")
    embedding = _embedding_model(sizes)
    _save_checkpoint(embedding, out_dir / "embedding" / "pytorch_model.bin")
    transform, plda = _plda(embedding.dimension, sizes.lda_dimension, rng)
    (out_dir / "plda").mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "plda" / "xvec_transform.npz", **transform)
    np.savez(out_dir / "plda" / "plda.npz", **plda)
    (out_dir / "config.yaml").write_text(
        _CONFIG.format(
            version=__version__,
            clustering=sizes.clustering,
            segmentation_step=sizes.segmentation_step,
            segmentation_batch_size=sizes.segmentation_batch_size,
            embedding_batch_size=sizes.embedding_batch_size,
            embedding_exclude_overlap=str(sizes.embedding_exclude_overlap).lower(),
            clustering_params="\n".join(f"    {k}: {v}" for k, v in sizes.clustering_params),
        )
    )
    return out_dir
