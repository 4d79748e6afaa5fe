"""`chunking_strategy` end to end: the official Python SDK (latest) against the live server.

The SDK sends `"auto"` as a plain field and the server_vad object in bracket form
(`chunking_strategy[type]=server_vad`, ...). The expected chunks are planned here with the same
VAD on the same decoded samples, and the wired model says its script once per chunk.
"""

from __future__ import annotations

import io

import numpy as np
import openai
import pytest

from app.audio import decode
from engines import vad
from engines.base import SAMPLE_RATE, Chunking
from engines.whisper import STREAM_FIRST_CHUNK_SECONDS
from tests.audio_fixtures import encode
from tests.speech_clips import clips, compose

GAPS = (0.6, 1.4, 0.9, 2.0, 0.7, 1.1)


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0, _strict_response_validation=True)


@pytest.fixture(scope="module")
def talk():
    """About 48 s of sentences and pauses as a WAV upload, and the samples the server decodes."""
    speech = clips()
    layout: list = [1.0]
    for k in range(12):
        layout += [speech[k % len(speech)], GAPS[k % len(GAPS)]]
    wav = encode(compose(layout).audio, "wav")
    return wav, decode(io.BytesIO(wav))


def script_text(script, times: int) -> str:
    return (script.text() * times).strip()


def test_auto_chunks_and_global_timestamps(client, talk, script):
    wav, samples = talk
    chunks = list(vad.plan_chunks(samples, Chunking(normalise_loudness=True)))
    assert len(chunks) == 2
    result = client.audio.transcriptions.create(
        file=("talk.wav", wav),
        model="whisper-1",
        response_format="verbose_json",
        chunking_strategy="auto",
    )
    assert result.text == script_text(script, len(chunks))
    expected = [
        t
        for c in chunks
        for s in script.transcribe
        for t in (c.to_original(s.start), c.to_original(s.end, is_end=True))
    ]
    assert [t for s in result.segments for t in (s.start, s.end)] == pytest.approx(expected, abs=1e-3)
    assert result.segments[0].start > 0.5  # the leading second of silence is not speech
    assert result.duration == pytest.approx(len(samples) / SAMPLE_RATE, abs=0.01)


def test_auto_words_are_global(client, talk, script):
    wav, samples = talk
    chunks = list(vad.plan_chunks(samples, Chunking(normalise_loudness=True)))
    result = client.audio.transcriptions.create(
        file=("talk.wav", wav),
        model="whisper-1",
        response_format="verbose_json",
        timestamp_granularities=["word"],
        chunking_strategy="auto",
    )
    words = result.words
    assert len(words) == len(script.text().split()) * len(chunks)
    per_chunk = len(words) // len(chunks)
    for k, chunk in enumerate(chunks):
        mine = words[k * per_chunk : (k + 1) * per_chunk]
        assert mine[0].start == pytest.approx(chunk.start / SAMPLE_RATE, abs=0.02)
        assert all(chunk.start / SAMPLE_RATE - 1e-3 <= w.start <= w.end <= chunk.end / SAMPLE_RATE + 1e-3 for w in mine)
    starts = [w.start for w in words]
    assert starts == sorted(starts)


@pytest.mark.parametrize(
    "settings",
    [
        {"threshold": 0.6, "prefix_padding_ms": 0, "silence_duration_ms": 400},
        {"threshold": 0.6, "prefix_padding_ms": 600, "silence_duration_ms": 400},
        # No pause is this long: one stretch of speech, cut where it is quietest.
        {"threshold": 0.3, "prefix_padding_ms": 300, "silence_duration_ms": 5000},
    ],
    ids=["no-prefix", "prefix-600", "long-silence"],
)
def test_server_vad_object_settings_reach_the_vad(client, talk, script, settings):
    wav, samples = talk
    result = client.audio.transcriptions.create(
        file=("talk.wav", wav),
        model="whisper-1",
        response_format="verbose_json",
        chunking_strategy={"type": "server_vad", **settings},
    )
    chunks = list(vad.plan_chunks(samples, Chunking(**settings)))
    assert chunks != list(vad.plan_chunks(samples, Chunking(normalise_loudness=True)))  # not `auto`
    assert result.text == script_text(script, len(chunks))
    starts = [s.start for s in result.segments[:: len(script.transcribe)]]
    assert starts == [round(c.start / SAMPLE_RATE, 3) for c in chunks]
    if settings["prefix_padding_ms"] == 600:
        regions = list(vad.speech_regions(samples, Chunking(**settings)))
        assert starts[0] == round((regions[0].start - 9600) / SAMPLE_RATE, 3)


def test_gpt4o_stream_with_chunking(client, talk, script):
    wav, samples = talk
    # A stream's first chunk closes early (at the first pause after a few seconds of speech).
    plan = vad.plan_chunks(samples, Chunking(normalise_loudness=True), first_chunk_seconds=STREAM_FIRST_CHUNK_SECONDS)
    n_chunks = len(list(plan))
    assert n_chunks > len(list(vad.plan_chunks(samples, Chunking(normalise_loudness=True))))
    stream = client.audio.transcriptions.create(
        file=("talk.wav", wav), model="gpt-4o-transcribe", chunking_strategy="auto", stream=True
    )
    events = list(stream)
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    done = [e for e in events if e.type == "transcript.text.done"]
    assert len(deltas) == len(script.transcribe) * n_chunks
    assert len(done) == 1 and done[0].text == "".join(deltas) == script_text(script, n_chunks)


def test_noise_only_is_empty_text(client):
    rng = np.random.default_rng(11)
    noise = encode((rng.standard_normal(20 * SAMPLE_RATE) * 0.05).astype(np.float32), "wav")
    result = client.audio.transcriptions.create(
        file=("noise.wav", noise), model="whisper-1", response_format="verbose_json", chunking_strategy="auto"
    )
    # The wired model speaks for any audio it gets: empty text means nothing was decoded.
    assert result.text == "" and result.segments == []


@pytest.mark.parametrize(
    "strategy",
    [
        {"type": "server_vad", "threshold": 1.5},
        {"type": "server_vad", "silence_duration_ms": -1},
        {"type": "server_vad", "prefix_padding_ms": "long"},
        {"type": "client_vad"},
        {"threshold": 0.5},
        {"type": "server_vad", "loudness": "max"},
        "manual",
    ],
    ids=["threshold", "silence", "prefix", "type", "no-type", "unknown-key", "string"],
)
def test_bad_chunking_strategy_is_400(client, talk, strategy):
    wav, _ = talk
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(file=("talk.wav", wav), model="whisper-1", chunking_strategy=strategy)
    error = caught.value.body
    assert set(error) >= {"message", "type", "param", "code"}
    assert error["param"] == "chunking_strategy" and error["type"] == "invalid_request_error"
