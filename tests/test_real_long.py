"""A 5-minute recording on real Whisper tiny.en: Earshot's sequential path says exactly what
faster-whisper's own `WhisperModel.transcribe` says, and VAD chunking stays as accurate.

The recording is a story read by hibari's neural voice with natural pauses (tests/real_speech.py).
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests import real_speech as rs

# Measured WER on the recording: sequential 0.3 %, `auto` 0.9 %, `server_vad` 0.9 % (AVX2 CPU).
MAX_WER = 0.04
# Issue #13's target: chunked decoding within one point of sequential decoding.
CHUNKED_MAX_EXTRA_WER = 0.01


@pytest.fixture(scope="module")
def recording() -> tuple[rs.Clip, bytes]:
    clip = rs.long_recording()
    assert clip.duration >= 300
    return clip, clip.wav()


@pytest.fixture(scope="module")
def client(real_server):
    return openai.OpenAI(
        base_url=real_server.v1, api_key="unused", max_retries=0, timeout=600, _strict_response_validation=True
    )


@pytest.fixture(scope="module")
def transcripts(client, recording, real_store) -> dict:
    """The recording through the server, sequentially and then with `auto` chunking, one request at
    a time (so that nothing shares the server's batches with the sequential request); and, in a
    thread of this process meanwhile, faster-whisper's own `WhisperModel.transcribe` of the same
    samples. Each decode keeps about one of the two CPU cores busy and CTranslate2 releases the GIL,
    so the direct run costs little time beside the server's; the words came out the same whether
    the three ran alone or at once (measured)."""
    from faster_whisper import WhisperModel

    from app.audio import decode

    _, wav = recording
    samples = decode(io.BytesIO(wav))  # what the server decodes from the upload

    def direct() -> str:
        model = WhisperModel(str(real_store / "faster-whisper-tiny.en"), device="cpu", compute_type="int8")
        segments, _ = model.transcribe(samples)
        return "".join(s.text for s in segments)

    with ThreadPoolExecutor(max_workers=1) as pool:
        running = pool.submit(direct)
        sequential = client.audio.transcriptions.create(file=("story.wav", wav), model="whisper-1").text
        chunked = client.audio.transcriptions.create(
            file=("story.wav", wav), model="whisper-1", chunking_strategy="auto"
        ).text
        return {"sequential": sequential, "chunked": chunked, "direct": running.result()}


def test_sequential_path_says_what_faster_whisper_says(transcripts, recording):
    """Same model, audio and options (faster-whisper's defaults: beam 5, temperature fallback,
    conditioning on previous text): the same words, to the character."""
    clip, _ = recording
    sequential = transcripts["sequential"]
    assert sequential.split() == transcripts["direct"].split()
    assert rs.word_error_rate([(clip.text, sequential)]) <= MAX_WER, sequential


def test_chunked_path_is_within_a_point_of_sequential(transcripts, recording):
    """`auto` (server_vad shares the decoding and measured the same: see bench/real_models.py; its
    short-clip stream is in tests/test_real_model.py)."""
    clip, _ = recording
    chunked = transcripts["chunked"]
    wer_sequential = rs.word_error_rate([(clip.text, transcripts["sequential"])])
    wer_chunked = rs.word_error_rate([(clip.text, chunked)])
    assert wer_chunked <= MAX_WER, chunked
    assert wer_chunked <= wer_sequential + CHUNKED_MAX_EXTRA_WER, (wer_chunked, wer_sequential)
