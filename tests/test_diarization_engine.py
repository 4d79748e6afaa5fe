"""The pyannote diarization engine on a random-weight pipeline folder in community-1's layout.

Everything goes through the real `Pipeline.from_pretrained(<folder>)`, offline. Random weights
give arbitrary turns, so these tests check wiring, shapes and the known-speaker mechanism, not
diarization accuracy.
"""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

from engines import speakers
from engines.base import SAMPLE_RATE
from engines.diarization import DiarizationStopped, PyannoteDiarizer, check_local_config, pick_torch_device
from engines.store import ModelNotFound
from tests import voices

# A random ResNet maps every recording, voice or not, within cosine 0.93-0.995 of every other
# (see the factory), so with random weights "same voice" can only mean "same audio". A trained
# WeSpeaker model separates voices at DEFAULT_MATCH_THRESHOLD (~0.75); here that would name any
# stranger after whichever speaker is free.
RANDOM_WEIGHTS_MATCH_THRESHOLD = 0.999


@pytest.fixture(scope="module")
def pipeline_dir(diarization_pipeline_dir):
    return diarization_pipeline_dir


@pytest.fixture(scope="module")
def diarizer(pipeline_dir):
    engine = PyannoteDiarizer(pipeline_dir, device="cpu", match_threshold=RANDOM_WEIGHTS_MATCH_THRESHOLD)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def meeting():
    return voices.meeting()


@pytest.fixture(scope="module")
def diarized(diarizer, meeting):
    return diarizer.diarize(meeting.audio)


def speech_seconds(turns, speaker) -> float:
    return sum(t.end - t.start for t in turns if t.speaker == speaker)


def test_loads_from_the_folder_without_touching_the_hub(pipeline_dir, monkeypatch):
    import huggingface_hub
    import pyannote.audio.utils.hf_hub as pyannote_hub

    def no_hub(*args, **kwargs):
        raise AssertionError(f"hub download attempted: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    monkeypatch.setattr(pyannote_hub, "hf_hub_download", no_hub)
    engine = PyannoteDiarizer(pipeline_dir, device="cpu")
    try:
        from pyannote.audio.pipelines import SpeakerDiarization

        assert isinstance(engine._pipeline, SpeakerDiarization)
        assert engine.match_threshold == speakers.DEFAULT_MATCH_THRESHOLD
        from pyannote.audio.telemetry import metrics

        # No usage reports to pyannote's servers.
        assert not metrics.is_metrics_enabled()
    finally:
        engine.close()


def test_a_config_naming_a_hub_model_is_refused_before_loading(pipeline_dir, tmp_path):
    folder = tmp_path / "pipeline"
    shutil.copytree(pipeline_dir, folder)
    check_local_config(folder)
    config = (folder / "config.yaml").read_text()
    (folder / "config.yaml").write_text(config.replace("$model/segmentation", "pyannote/segmentation-3.0"))
    with pytest.raises(ModelNotFound, match="segmentation"):
        PyannoteDiarizer(folder, device="cpu")
    (folder / "config.yaml").write_text(config)
    shutil.rmtree(folder / "plda")
    with pytest.raises(ModelNotFound, match="plda"):
        PyannoteDiarizer(folder, device="cpu")
    (folder / "config.yaml").unlink()
    with pytest.raises(ModelNotFound, match="config.yaml"):
        PyannoteDiarizer(folder, device="cpu")


def test_turns_are_ordered_disjoint_and_inside_the_audio(diarized, meeting):
    duration = len(meeting.audio) / SAMPLE_RATE
    assert diarized.turns, "the random pipeline found no speech in the meeting"
    for turn in diarized.turns:
        assert 0.0 <= turn.start < turn.end <= duration
        assert isinstance(turn.speaker, str) and turn.speaker
    for a, b in itertools.pairwise(diarized.turns):
        assert a.start <= b.start and a.end <= b.start + 1e-3


def test_every_speaker_with_enough_speech_has_an_embedding_of_its_own_speech(diarizer, diarized, meeting):
    labels = {t.speaker for t in diarized.turns}
    enough = {s for s in labels if speech_seconds(diarized.turns, s) >= speakers.MIN_SPEAKER_EVIDENCE_SECONDS}
    assert set(diarized.embeddings) == enough
    for label, embedding in diarized.embeddings.items():
        assert embedding.shape == (256,) and np.all(np.isfinite(embedding))
        # It is the embedding of that speaker's speech, cut from the recording.
        np.testing.assert_allclose(
            diarizer.embed(speakers.speech_of(meeting.audio, diarized.turns, label)), embedding, rtol=1e-5, atol=1e-6
        )


def test_embeddings_can_be_skipped(diarizer, diarized, meeting):
    plain = diarizer.diarize(meeting.audio, embed_speakers=False)
    assert plain.embeddings == {}
    assert plain.turns == diarized.turns


def test_the_waveform_is_handed_over_in_memory_without_a_copy(diarizer, meeting, monkeypatch):
    seen = []
    pipeline = diarizer._pipeline

    def spy(file, **kwargs):
        seen.append(dict(file))
        return pipeline(file, **kwargs)

    monkeypatch.setattr(diarizer, "_pipeline", spy)
    audio = meeting.audio[: 6 * SAMPLE_RATE]
    diarizer.diarize(audio, embed_speakers=False)
    (file,) = seen
    assert "audio" not in file and file["sample_rate"] == SAMPLE_RATE
    assert tuple(file["waveform"].shape) == (1, len(audio))
    assert np.shares_memory(file["waveform"].numpy(), audio)


def test_a_caller_that_gives_up_stops_the_diarization(diarizer, meeting):
    polls = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) > 1

    with pytest.raises(DiarizationStopped):
        diarizer.diarize(meeting.audio, should_stop=should_stop)
    assert len(polls) == 2  # stopped at the second unit of work, not at the end


@pytest.mark.parametrize("audio", [np.zeros(0, np.float32), np.full(800, 0.1, np.float32)])
def test_empty_audio_and_scraps_have_no_turns(diarizer, audio):
    result = diarizer.diarize(audio)
    assert result.turns == [] and result.embeddings == {}


def test_the_same_audio_embeds_the_same(diarizer, meeting):
    clip = meeting.audio[SAMPLE_RATE : 4 * SAMPLE_RATE]
    first = diarizer.embed(clip)
    assert first.shape == (256,) and first.dtype == np.float32
    np.testing.assert_array_equal(first, diarizer.embed(clip.copy()))
    other = diarizer.embed(meeting.audio[9 * SAMPLE_RATE : 12 * SAMPLE_RATE])
    assert not np.array_equal(first, other)
    with pytest.raises(ValueError):
        diarizer.embed(np.zeros(10, np.float32))


def test_a_reference_cut_from_the_meeting_names_its_speaker_and_a_stranger_names_nobody(diarizer, diarized, meeting):
    embedded = diarized.embeddings
    assert embedded
    # The reference: the speech of the speaker who talks most, cut out of the meeting itself.
    speaker = max(embedded, key=lambda s: speech_seconds(diarized.turns, s))
    reference = speakers.speech_of(meeting.audio, diarized.turns, speaker)
    known = [("Alice", diarizer.embed(reference)), ("Mallory", diarizer.embed(voices.stranger()))]

    names = speakers.match_known_speakers(embedded, known, diarizer.match_threshold)
    assert names == {speaker: "Alice"}
    # The stranger stays unnamed on its own too, though every speaker is free and one is closest.
    assert speakers.match_known_speakers(embedded, known[1:], diarizer.match_threshold) == {}


def test_devices():
    import torch

    assert pick_torch_device("cpu").type == "cpu"
    assert str(pick_torch_device("cuda", 1)) == "cuda:1"
    assert pick_torch_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_runs_on_cuda_when_the_engine_device_is_cuda(pipeline_dir, diarizer, meeting):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    engine = PyannoteDiarizer(pipeline_dir, device="cuda")
    try:
        model = engine._pipeline._segmentation.model
        assert next(model.parameters()).device.type == "cuda"
        assert engine._embedding.device.type == "cuda"
        result = engine.diarize(meeting.audio)
        assert result.turns and all(e.shape == (256,) for e in result.embeddings.values())
        clip = meeting.audio[SAMPLE_RATE : 4 * SAMPLE_RATE]
        on_gpu, on_cpu = engine.embed(clip), diarizer.embed(clip)
        assert speakers.cosine_similarities(on_gpu[None], on_cpu[None])[0, 0] > 0.999
    finally:
        engine.close()
