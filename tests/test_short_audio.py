"""Very short audio (a click, a cut-off recording) gets an ordinary answer on every path.

A clip of one mel frame (10 ms) used to end in a 500 wherever words were aligned (word timestamps,
logprobs, diarization): CTranslate2 aligns over half the frames, so there was nothing to align
to and faster-whisper's word split indexed out of range. The wired model says its script whatever
it hears, so it reaches alignment on any clip; real tiny.en shows what a real model makes of the
start of a spoken sentence.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import openai
import pytest

from tests import real_speech as rs
from tests.audio_fixtures import encode

SAMPLE_COUNTS = (0, 1, 160, 400, 1600, 8000)

# name -> (endpoint, request fields); every way a request reaches the engines.
PATHS = {
    "json": ("transcriptions", dict(model="whisper-1")),
    "srt": ("transcriptions", dict(model="whisper-1", response_format="srt")),
    "words": ("transcriptions", dict(model="whisper-1", response_format="verbose_json",
                                     timestamp_granularities=["word", "segment"])),
    "chunked-words": ("transcriptions", dict(model="whisper-1", response_format="verbose_json",
                                             timestamp_granularities=["word"], chunking_strategy="auto")),
    "logprobs": ("transcriptions", dict(model="gpt-4o-transcribe", include=["logprobs"])),
    "server-vad-logprobs": ("transcriptions", dict(model="gpt-4o-transcribe", include=["logprobs"],
                                                   chunking_strategy={"type": "server_vad"})),
    "diarized": ("transcriptions", dict(model="gpt-4o-transcribe-diarize", response_format="diarized_json")),
    "diarized-auto": ("transcriptions", dict(model="gpt-4o-transcribe-diarize", response_format="diarized_json",
                                             chunking_strategy="auto")),
    "stream-logprobs": ("transcriptions", dict(model="gpt-4o-transcribe", stream=True, include=["logprobs"])),
    "stream-auto": ("transcriptions", dict(model="gpt-4o-transcribe", stream=True, chunking_strategy="auto")),
    "stream-diarized": ("transcriptions", dict(model="gpt-4o-transcribe-diarize", stream=True,
                                               response_format="diarized_json")),
    "translation": ("translations", dict(model="whisper-1", response_format="verbose_json")),
}


def _wav(samples: np.ndarray) -> bytes:
    if samples.size:
        return encode(samples, "wav")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:  # a valid WAV with no frames at all
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    return buf.getvalue()


def _call(client: openai.OpenAI, path: str, data: bytes):
    endpoint, fields = PATHS[path]
    api = client.audio.transcriptions if endpoint == "transcriptions" else client.audio.translations
    result = api.create(file=("short.wav", data), **fields)
    if fields.get("stream"):
        events = list(result)
        kinds = [e.type for e in events]
        assert kinds and kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.done") == 1, kinds
        return events[-1].text
    return result if isinstance(result, str) else result.text


def _check(client, path: str, samples: np.ndarray) -> str:
    text = _call(client, path, _wav(samples))
    assert isinstance(text, str)
    return text


@pytest.fixture(scope="module")
def wired(diarizing_server):
    return openai.OpenAI(base_url=diarizing_server.v1, api_key="k", max_retries=0, _strict_response_validation=True)


# The SDK marks translations deprecated (OpenAI's 2027 shutdown); Earshot keeps serving them.
pytestmark = pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")


@pytest.mark.parametrize("path", PATHS)
def test_short_clips_on_the_wired_model(wired, diarizing_server, path):
    noise = np.random.default_rng(1).standard_normal(max(SAMPLE_COUNTS)).astype(np.float32) * 0.3
    for n in SAMPLE_COUNTS:
        _check(wired, path, noise[:n])
    assert "server_error" not in diarizing_server.log()
    assert "Traceback" not in diarizing_server.log()


def test_a_clip_of_one_frame_reaches_word_alignment(wired):
    """The case that failed: the wired model speaks on 160 samples, and its words lie in them."""
    samples = np.random.default_rng(2).standard_normal(160).astype(np.float32) * 0.3
    result = wired.audio.transcriptions.create(
        file=("short.wav", _wav(samples)), model="gpt-4o-transcribe", include=["logprobs"]
    )
    # faster-whisper drops segments whose aligned start equals their end; what is kept has
    # logprobs for its tokens.
    assert len(result.logprobs or []) >= (1 if result.text else 0)
    verbose = wired.audio.transcriptions.create(
        file=("short.wav", _wav(samples)), model="whisper-1", response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert all(0 <= w.start <= w.end <= verbose.duration for w in verbose.words or [])


@pytest.mark.parametrize("path", ["words", "stream-logprobs", "diarized", "translation"])
def test_the_start_of_a_spoken_sentence_on_real_weights(real_client, real_server, path):
    speech = rs.trim(rs.hibari(rs.SENTENCES[0]))
    for n in SAMPLE_COUNTS:
        text = _check(real_client, path, speech[:n])
        # Half a second holds a word at most; the model may say it or nothing, not a sentence.
        assert len(rs.normalise(text)) <= 4, (n, text)
    assert "Traceback" not in real_server.log()
