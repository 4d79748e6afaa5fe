"""Realtime transcription sessions held by the official Python SDK (`client.realtime.connect`) on
real Whisper tiny.en with real speech: server VAD and manual commit, PCM 24 kHz and G.711,
transcripts equal to the HTTP endpoint's on the same audio, 8 sessions at once, and text that
arrives while a long turn is still being spoken."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import openai
import pytest

from tests.real_speech import SENTENCES, hibari, normalise
from tests.realtime_client import SERVER_VAD, audio_input, checked, g711, items, pcm24, pcm_wav

RATE = 16000
COMPLETED = "conversation.item.input_audio_transcription.completed"


def spelled(text: str) -> str:
    """The words' letters in order: tiny.en writes "river bank" as "riverbank"."""
    return "".join(normalise(text))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


def g711_wav(data: bytes, law: str) -> bytes:
    """The same G.711 bytes in a WAV container (format tag 7 μ-law, 6 A-law), as a phone system stores them."""
    import struct

    tag = {"pcmu": 7, "pcma": 6}[law]
    fmt = struct.pack("<HHIIHHH", tag, 1, 8000, 8000, 1, 8, 0)
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def http_text(real_client, data: bytes, model: str = "whisper-1", name: str = "a.wav") -> str:
    return real_client.audio.transcriptions.create(model=model, file=(name, data)).text


@pytest.fixture(scope="module")
def async_client(real_server):
    return openai.AsyncOpenAI(base_url=real_server.v1, api_key="unused", max_retries=0)


async def run_session(client, session: dict, data: bytes, *, turns: int, commit: bool = False,
                      chunk: int = 4800, pace: float = 0.0, timeout: float = 120) -> list[tuple[float, dict]]:  # fmt: skip
    """Send `data` in appends (every `pace` seconds, or at once), then collect (arrival time,
    event) until `turns` items completed. Every event is checked against the SDK's types."""
    received: list[tuple[float, dict]] = []
    async with client.realtime.connect(extra_query={"intent": "transcription"}) as conn:
        await conn.session.update(session={"type": "transcription", **session})

        async def send() -> None:
            for first in range(0, len(data), chunk):
                await conn.input_audio_buffer.append(audio=base64.b64encode(data[first : first + chunk]).decode())
                if pace:
                    await asyncio.sleep(pace)
            if commit:
                await conn.input_audio_buffer.commit()

        sender = asyncio.create_task(send())
        started = time.monotonic()
        done = 0
        async with asyncio.timeout(timeout):
            async for event in conn:
                received.append((time.monotonic() - started, checked(event.to_dict())))
                assert event.type not in ("error", "conversation.item.input_audio_transcription.failed"), event
                if event.type == COMPLETED:
                    done += 1
                    if done == turns:
                        break
        await sender
    return received


def transcripts(received: list[tuple[float, dict]]) -> list[str]:
    return [event["transcript"] for _, event in received if event["type"] == COMPLETED]


def check_items(received: list[tuple[float, dict]]) -> None:
    """Each item: committed, added, done, then its deltas, then completed; deltas join to the transcript."""
    for item_id, events in items([e for _, e in received]).items():
        kinds = [e["type"] for e in events]
        committed = kinds.index("input_audio_buffer.committed")
        assert kinds[committed : committed + 3] == [
            "input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"
        ], kinds  # fmt: skip
        assert kinds[-1] == COMPLETED and kinds.count(COMPLETED) == 1
        deltas = "".join(e["delta"] for e in events if e["type"].endswith(".delta"))
        assert deltas == events[-1]["transcript"]


def test_server_vad_pcm_turns_match_the_http_endpoint(async_client, real_client):
    first, second = hibari(SENTENCES[0]), hibari(SENTENCES[5])
    clip = np.concatenate([silence(0.5), first, silence(1.0), second, silence(1.0)])
    session = {"audio": audio_input(model="whisper-1", turn_detection=SERVER_VAD)}
    received = asyncio.run(run_session(async_client, session, pcm24(clip), turns=2))
    check_items(received)
    kinds = [e["type"] for _, e in received]
    assert kinds.count("input_audio_buffer.speech_started") == kinds.count("input_audio_buffer.speech_stopped") == 2
    started = [e for _, e in received if e["type"] == "input_audio_buffer.speech_started"]
    stopped = [e for _, e in received if e["type"] == "input_audio_buffer.speech_stopped"]
    # Each turn is the audio between its reported start and end: that stretch of the same PCM,
    # uploaded to the HTTP endpoint, gives the same transcript.
    pcm = pcm24(clip)
    expected = [
        http_text(real_client, pcm_wav(pcm[a["audio_start_ms"] * 48 : b["audio_end_ms"] * 48]))
        for a, b in zip(started, stopped)
    ]
    assert transcripts(received) == expected
    assert [spelled(t) for t in expected] == [spelled(SENTENCES[0]), spelled(SENTENCES[5])]
    # Speech times in the session's audio: the first sentence starts after 0.5 s of silence.
    assert 100 <= started[0]["audio_start_ms"] <= 300
    assert abs(stopped[0]["audio_end_ms"] - (500 + len(first) / 16 + 300)) < 200


@pytest.mark.parametrize("law", ["pcma", "pcmu"])
def test_manual_commit_g711_matches_the_http_endpoint_exactly(async_client, real_client, law):
    clip = np.concatenate([silence(0.3), hibari(SENTENCES[1]), silence(0.5), hibari(SENTENCES[3]), silence(0.3)])
    data = g711(clip, law)
    session = {"audio": audio_input(f"audio/{law}", model="gpt-4o-transcribe"),
               "include": ["item.input_audio_transcription.logprobs"]}  # fmt: skip
    received = asyncio.run(run_session(async_client, session, data, turns=1, commit=True, chunk=800))
    check_items(received)
    (transcript,) = transcripts(received)
    # One commit of the whole buffer: the same samples as the HTTP endpoint decodes from a WAV of
    # the same G.711 bytes, so the same text.
    assert transcript == http_text(real_client, g711_wav(data, law), model="gpt-4o-transcribe")
    assert spelled(transcript) == spelled(SENTENCES[1] + " " + SENTENCES[3])
    completed = received[-1][1]
    assert completed["usage"]["type"] == "tokens" and completed["usage"]["output_tokens"] > 0
    assert completed["logprobs"] and all(lp["logprob"] <= 0 for lp in completed["logprobs"])


def test_eight_concurrent_sessions_each_get_their_own_words(async_client, real_client):
    formats = ["audio/pcm", "audio/pcmu", "audio/pcma", "audio/pcm"] * 2
    clips = [np.concatenate([silence(0.4), hibari(SENTENCES[i % 6], speed=1.0 + 0.1 * (i // 6)), silence(0.8)])
             for i in range(8)]  # fmt: skip

    def encoded(fmt: str, clip: np.ndarray) -> bytes:
        return pcm24(clip) if fmt == "audio/pcm" else g711(clip, fmt.split("/")[1])

    async def all_sessions():
        return await asyncio.gather(*(
            run_session(async_client, {"audio": audio_input(fmt, turn_detection=SERVER_VAD)},
                        encoded(fmt, clip), turns=1, chunk=2400 if fmt == "audio/pcm" else 800, pace=0.02)
            for fmt, clip in zip(formats, clips)
        ))  # fmt: skip

    results = asyncio.run(all_sessions())
    for i, received in enumerate(results):
        check_items(received)
        (transcript,) = transcripts(received)
        assert spelled(transcript) == spelled(SENTENCES[i % 6]), (i, transcript)


def test_a_long_turn_sends_text_before_the_speaker_stops(async_client):
    # ~20 s of speech with 300 ms pauses (shorter than the 500 ms that end a turn): one turn.
    sentences = [hibari(s) for s in SENTENCES[:5]]
    parts = [silence(0.5)]
    for sentence in sentences:
        parts += [sentence, silence(0.3)]
    clip = np.concatenate([*parts, silence(1.0)])
    # Sent at twice real time: 200 ms of audio every 100 ms.
    received = asyncio.run(run_session(
        async_client, {"audio": audio_input(turn_detection=SERVER_VAD)}, pcm24(clip), turns=1, chunk=9600, pace=0.1,
    ))  # fmt: skip
    check_items(received)
    kinds = [e["type"] for _, e in received]
    assert kinds.count("input_audio_buffer.speech_started") == 1
    stopped_at = next(t for t, e in received if e["type"] == "input_audio_buffer.speech_stopped")
    first_delta_at = next(t for t, e in received if e["type"].endswith(".delta"))
    assert first_delta_at < stopped_at, (first_delta_at, stopped_at)
    (transcript,) = transcripts(received)
    assert spelled(transcript) == spelled(" ".join(SENTENCES[:5]))
