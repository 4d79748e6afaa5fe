"""`stream=true`: OpenAI's SSE events, produced while the engine decodes."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.audio_fixtures import encode, speechlike
from tests.inprocess import Probe


def text_of(script):
    return "".join(s.text for s in script.transcribe).strip()


@pytest.fixture(scope="module")
def long_wav():
    # Three 30 s windows: the wired model emits the script once per window.
    return encode(speechlike(75.0), "wav")


def sse_events(body: str) -> list[dict]:
    assert body.endswith("\n\n")
    chunks = body[:-2].split("\n\n")
    events = []
    for chunk in chunks:
        if chunk.startswith(":"):  # keep-alive comment
            continue
        assert chunk.startswith("data: ") and "\n" not in chunk, chunk
        events.append(json.loads(chunk[len("data: "):]))
    return events


def test_raw_stream_framing_and_headers(http, wav, script):
    resp = http.post(
        "/v1/audio/transcriptions",
        data={"model": "gpt-4o-transcribe", "stream": "true", "include[]": "logprobs"},
        files={"file": ("a.wav", wav, "audio/wav")},
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["cache-control"] == "no-cache"
    assert resp.headers["x-accel-buffering"] == "no"
    assert resp.headers["x-request-id"].startswith("req_")
    assert "[DONE]" not in resp.text and "event:" not in resp.text
    events = sse_events(resp.text)
    deltas, done = events[:-1], events[-1]
    assert deltas and all(e["type"] == "transcript.text.delta" for e in deltas)
    assert done["type"] == "transcript.text.done"
    assert "".join(e["delta"] for e in deltas) == done["text"] == text_of(script)
    assert sum(len(e["logprobs"]) for e in deltas) == len(done["logprobs"]) > 0
    assert [lp for e in deltas for lp in e["logprobs"]] == done["logprobs"]
    usage = done["usage"]
    assert usage["type"] == "tokens" and usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    # Compact JSON, as OpenAI sends it.
    assert '", "' not in resp.text


def test_stream_without_logprobs_has_no_logprobs_key(http, wav):
    resp = http.post(
        "/v1/audio/transcriptions", data={"model": "gpt-4o-mini-transcribe", "stream": "true"},
        files={"file": ("a.wav", wav, "audio/wav")},
    )
    events = sse_events(resp.text)
    assert all("logprobs" not in e for e in events)


def test_whisper1_ignores_stream(http, wav, script):
    resp = http.post(
        "/v1/audio/transcriptions", data={"model": "whisper-1", "stream": "true"},
        files={"file": ("a.wav", wav, "audio/wav")},
    )
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["text"] == text_of(script)


def test_errors_before_the_stream_are_plain_http(http, wav):
    resp = http.post(
        "/v1/audio/transcriptions", data={"model": "gpt-4o-transcribe", "stream": "true"},
        files={"file": ("a.wav", b"junk", "audio/wav")},
    )
    assert resp.status_code == 400 and resp.headers["content-type"] == "application/json"
    assert resp.json()["error"]["code"] == "unsupported_format"


def test_python_sdk_stream(server, long_wav, script):
    client = openai.OpenAI(base_url=server.v1, api_key="x", _strict_response_validation=True, max_retries=0)
    events = list(
        client.audio.transcriptions.create(
            file=("long.wav", long_wav), model="gpt-4o-transcribe", stream=True, include=["logprobs"]
        )
    )
    types = [e.type for e in events]
    assert types.count("transcript.text.done") == 1 and types[-1] == "transcript.text.done"
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) == 3 * len(script.transcribe)
    done = events[-1]
    assert "".join(d.delta for d in deltas) == done.text
    assert done.text == " ".join([text_of(script)] * 3)
    assert sum(len(d.logprobs) for d in deltas) == len(done.logprobs)
    assert done.usage.input_token_details.audio_tokens == 75 * 50


def test_first_delta_arrives_while_the_engine_is_still_decoding(probed, long_wav):
    probe = Probe(hold_after_first=True)
    with probed(probe) as base, httpx.Client(base_url=base, timeout=60) as http:
        with http.stream(
            "POST", "/v1/audio/transcriptions", data={"model": "gpt-4o-transcribe", "stream": "true"},
            files={"file": ("long.wav", long_wav, "audio/wav")},
        ) as resp:
            lines = resp.iter_lines()
            first = next(line for line in lines if line.startswith("data: "))
            # The engine is parked after its first segment: a replaying server could not have sent this.
            assert not probe.finished.is_set() and probe.produced == 1
            assert json.loads(first[6:])["type"] == "transcript.text.delta"
            probe.release.set()
            rest = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
        assert rest[-1]["type"] == "transcript.text.done"
        assert probe.finished.is_set() and not probe.closed_early


def test_disconnect_stops_decoding_and_frees_the_model(probed, long_wav, script):
    probe = Probe(hold_after_first=True)
    with probed(probe) as base:
        with httpx.Client(base_url=base, timeout=60) as http:
            with http.stream(
                "POST", "/v1/audio/transcriptions", data={"model": "gpt-4o-transcribe", "stream": "true"},
                files={"file": ("long.wav", long_wav, "audio/wav")},
            ) as resp:
                next(line for line in resp.iter_lines() if line.startswith("data: "))
            # Leaving the block closes the connection mid-stream.
        probe.release.set()
        assert probe.finished.wait(timeout=5), "decoding did not stop after the client left"
        assert probe.closed_early and probe.produced < 3 * len(script.transcribe)
        with httpx.Client(base_url=base, timeout=60) as http:
            resp = http.post(
                "/v1/audio/transcriptions", data={"model": "gpt-4o-transcribe"},
                files={"file": ("a.wav", encode(speechlike(3.0), "wav"), "audio/wav")},
            )
            assert resp.status_code == 200 and resp.json()["text"] == text_of(script)


def test_failure_mid_stream_is_an_error_event(probed, long_wav):
    probe = Probe(fail_after=1)
    with probed(probe) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        received = []
        with pytest.raises(openai.APIError) as caught:
            for event in client.audio.transcriptions.create(
                file=("long.wav", long_wav), model="gpt-4o-transcribe", stream=True
            ):
                received.append(event.type)
        assert received == ["transcript.text.delta"]
        assert "server had an error" in str(caught.value)
        with httpx.Client(base_url=base, timeout=60) as http:
            resp = http.post(
                "/v1/audio/transcriptions", data={"model": "gpt-4o-transcribe", "stream": "true"},
                files={"file": ("long.wav", long_wav, "audio/wav")},
            )
        events = sse_events(resp.text)
        assert events[-1] == {
            "error": {
                "message": "The server had an error while processing your request.",
                "type": "server_error", "param": None, "code": None,
            }
        }


def test_keepalive_pings_are_harmless_to_the_sdk(probed, wav, script):
    probe = Probe(delay=0.3)
    with probed(probe, sse_ping_seconds=0.05) as base:
        with httpx.Client(base_url=base, timeout=60) as http:
            raw = http.post(
                "/v1/audio/transcriptions", data={"model": "gpt-4o-transcribe", "stream": "true"},
                files={"file": ("a.wav", wav, "audio/wav")},
            ).text
        assert "\n: ping" in raw or raw.startswith(": ping")
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", _strict_response_validation=True, max_retries=0)
        events = list(client.audio.transcriptions.create(file=("a.wav", wav), model="gpt-4o-transcribe", stream=True))
        assert events[-1].type == "transcript.text.done" and events[-1].text == text_of(script)
