"""The realtime transcription socket's contract on the wired model: event shapes (validated against
the SDK's own types), errors for bad client events without losing the socket, refusals of the
upgrade as HTTP errors, the limits, and a vanishing client freeing its work at once.
Real speech through the official SDKs: tests/test_realtime_real.py, tests/test_node_realtime.py."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from app.main import create_app
from app.settings import Settings
from tests.audio_fixtures import encode, speechlike
from tests.inprocess import Probe, serve_app
from tests.realtime_client import SERVER_VAD, Socket, audio_input, items, pcm24, ws_url

WIRED_AUDIO = pcm24(speechlike(4.0))


def text_of(script) -> str:
    return "".join(s.text for s in script.transcribe).strip()


def test_manual_commit_transcribes_with_the_models_usage(server, script):
    with Socket(server.base_url) as rt:
        created = rt.created["session"]
        assert created["type"] == "transcription" and created["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        assert created["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        for model, usage in (("whisper-1", "duration"), ("gpt-4o-transcribe", "tokens")):
            shown = rt.update(audio=audio_input(model=model))
            assert shown["audio"]["input"]["transcription"]["model"] == model
            assert shown["audio"]["input"]["turn_detection"] is None
            rt.append(WIRED_AUDIO)
            rt.send({"type": "input_audio_buffer.commit", "event_id": "mine"})
            events = rt.until("conversation.item.input_audio_transcription.completed")
            kinds = [e["type"] for e in events]
            assert kinds[:3] == ["input_audio_buffer.committed", "conversation.item.added", "conversation.item.done"]
            (item_id,) = items(events)
            completed = events[-1]
            assert completed["transcript"] == text_of(script)
            deltas = [e["delta"] for e in events if e["type"].endswith(".delta")]
            assert "".join(deltas) == completed["transcript"] and len(deltas) == len(script.transcribe)
            assert completed["usage"]["type"] == usage
            if usage == "duration":
                assert completed["usage"]["seconds"] == 4
            else:
                assert completed["usage"]["output_tokens"] > 0 and completed["usage"]["input_token_details"]["audio_tokens"] == 200
        # Items chain: the second names the first as its predecessor.
        assert events[0]["previous_item_id"] is not None


def test_logprobs_on_deltas_and_completed(server, script):
    with Socket(server.base_url) as rt:
        rt.update(audio=audio_input(model="gpt-4o-transcribe"), include=["item.input_audio_transcription.logprobs"])
        rt.append(WIRED_AUDIO)
        rt.send({"type": "input_audio_buffer.commit"})
        events = rt.until("conversation.item.input_audio_transcription.completed")
        deltas = [e for e in events if e["type"].endswith(".delta")]
        assert all(d["logprobs"] for d in deltas)
        completed = events[-1]
        assert completed["logprobs"] == [lp for d in deltas for lp in d["logprobs"]]
        assert "".join(lp["token"] for lp in completed["logprobs"]).strip() == text_of(script)


BAD_EVENTS = [
    # (what is sent, error code, param)
    ("not json", "invalid_json", None),
    ("[1, 2]", "invalid_json", None),
    (b"\x00\x01binary", "invalid_json", None),
    ({"event_id": "e1"}, "missing_required_parameter", "type"),
    ({"type": "nonsense"}, "invalid_value", "type"),
    ({"type": "response.create"}, "unsupported_value", "type"),
    ({"type": "conversation.item.create", "item": {}}, "unsupported_value", "type"),
    ({"type": "transcription_session.update", "session": {}}, "unsupported_value", "type"),
    ({"type": "session.update"}, "missing_required_parameter", "session"),
    ({"type": "session.update", "session": "x"}, "invalid_type", "session"),
    ({"type": "session.update", "session": {"type": "realtime"}}, "unsupported_value", "session.type"),
    ({"type": "session.update", "session": {}}, "missing_required_parameter", "session.type"),
    ({"type": "session.update", "session": {"type": "transcription", "instructions": "hi"}}, "unknown_parameter", "session.instructions"),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/wav"}}}}},
     "invalid_value", "session.audio.input.format.type"),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}},
     "invalid_value", "session.audio.input.format.rate"),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"turn_detection": {**SERVER_VAD, "threshold": 2}}}}},
     "decimal_above_max_value", "session.audio.input.turn_detection.threshold"),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}},
     "invalid_value", "session.audio.input.turn_detection.type"),
    ({"type": "session.update", "session": {"type": "transcription", "audio": audio_input(model="no-such-model")}},
     "invalid_value", "session.audio.input.transcription.model"),
    ({"type": "session.update", "session": {"type": "transcription", "audio": audio_input(language="english")}},
     "invalid_value", "session.audio.input.transcription.language"),
    ({"type": "session.update", "session": {"type": "transcription", "audio": audio_input(keywords=["Earshot"])}},
     "unsupported_value", "session.audio.input.transcription.keywords"),
    ({"type": "session.update", "session": {"type": "transcription", "include": ["item.input_audio_transcription.logprobs"]}},
     "unsupported_value", "session.include"),
    ({"type": "input_audio_buffer.append"}, "missing_required_parameter", "audio"),
    ({"type": "input_audio_buffer.append", "audio": 12}, "invalid_type", "audio"),
    ({"type": "input_audio_buffer.append", "audio": "not base64!"}, "invalid_value", "audio"),
    ({"type": "input_audio_buffer.commit"}, "input_audio_buffer_commit_empty", None),
]


def test_bad_client_events_get_error_events_and_the_session_goes_on(server, script):
    with Socket(server.base_url) as rt:
        for sent, code, param in BAD_EVENTS:
            if isinstance(sent, dict):
                sent = {**sent, "event_id": sent.get("event_id", "evt_42")}
            rt.send(sent)
            event = rt.next()
            assert event["type"] == "error", (sent, event)
            error = event["error"]
            assert (error["code"], error["param"]) == (code, param), (sent, error)
            assert error["type"] == "invalid_request_error" and error["message"]
            if isinstance(sent, dict):
                assert error["event_id"] == sent["event_id"]
        # Nothing the bad events asked for took effect, and the socket still transcribes.
        rt.update(audio=audio_input())
        rt.append(WIRED_AUDIO)
        rt.send({"type": "input_audio_buffer.commit"})
        assert rt.until("conversation.item.input_audio_transcription.completed")[-1]["transcript"] == text_of(script)


def test_clear_drops_the_buffer(server):
    with Socket(server.base_url) as rt:
        rt.update(audio=audio_input())
        rt.append(WIRED_AUDIO)
        rt.send({"type": "input_audio_buffer.clear"})
        assert rt.next()["type"] == "input_audio_buffer.cleared"
        rt.send({"type": "input_audio_buffer.commit"})
        assert rt.next()["error"]["code"] == "input_audio_buffer_commit_empty"


def test_server_vad_finds_no_turn_in_silence(server):
    with Socket(server.base_url) as rt:
        rt.update(audio=audio_input(turn_detection=SERVER_VAD))
        rt.append(bytes(48000 * 3))
        rt.send({"type": "input_audio_buffer.commit"})
        # No speech started, so there is nothing to commit: the first event answers the commit.
        assert rt.next()["error"]["code"] == "input_audio_buffer_commit_empty"


def _refusal(url: str, **options) -> httpx.Response:
    with pytest.raises(InvalidStatus) as caught:
        with connect(url, **options):
            pass
    response = caught.value.response
    return httpx.Response(response.status_code, headers=dict(response.headers), content=bytes(response.body or b""))


def assert_envelope(response: httpx.Response, status: int, code: str | None) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    return error


def test_upgrade_without_the_transcription_intent_is_refused(server):
    for query in ("", "model=gpt-realtime", "intent=conversation"):
        error = assert_envelope(_refusal(ws_url(server.base_url, query)), 400, "invalid_value")
        assert error["param"] == "intent"


@pytest.fixture(scope="module")
def limited(whisper_model_dir, tmp_path_factory):
    settings = Settings(
        asr_model=str(whisper_model_dir), models_dir=tmp_path_factory.mktemp("store"), api_keys=["sk-realtime-test"],
        realtime_max_sessions=2, realtime_idle_timeout=1.5, realtime_max_buffer_seconds=2.0,
    )  # fmt: skip
    with serve_app(create_app(settings)) as base:
        yield base


KEY = {"additional_headers": {"Authorization": "Bearer sk-realtime-test"}}


def test_api_key_by_header_or_subprotocol(limited):
    url = ws_url(limited)
    assert_envelope(_refusal(url), 401, None)
    error = assert_envelope(_refusal(url, additional_headers={"Authorization": "Bearer sk-wrong-key-1234"}), 401, "invalid_api_key")
    assert "sk-wrong-key-1234" not in error["message"]
    with Socket(limited, **KEY) as rt:
        assert rt.ws.subprotocol is None
    # Browsers cannot set headers: the key rides in a subprotocol, and the server picks `realtime`.
    with Socket(limited, subprotocols=["realtime", "openai-insecure-api-key.sk-realtime-test"]) as rt:
        assert rt.ws.subprotocol == "realtime"
    assert_envelope(_refusal(url, subprotocols=["realtime", "openai-insecure-api-key.sk-nope"]), 401, "invalid_api_key")


def test_session_limit_refuses_with_429_and_frees_on_close(limited):
    first, second = Socket(limited, **KEY), Socket(limited, **KEY)
    try:
        response = _refusal(ws_url(limited), **KEY)
        assert_envelope(response, 429, "rate_limit_exceeded")
        assert int(response.headers["retry-after"]) > 0
    finally:
        first.ws.close()
    deadline = time.monotonic() + 5
    while True:  # the server notices the close a moment later
        try:
            Socket(limited, **KEY).ws.close()
            break
        except InvalidStatus:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    second.ws.close()


def test_idle_session_is_closed_with_an_error_event(limited):
    with Socket(limited, **KEY) as rt:
        started = time.monotonic()
        event = rt.next(timeout=10)
        assert event["type"] == "error" and event["error"]["code"] == "idle_timeout"
        with pytest.raises(ConnectionClosed):
            rt.ws.recv(timeout=5)
        assert 1.4 < time.monotonic() - started < 5


def test_uncommitted_buffer_is_bounded(limited):
    with Socket(limited, **KEY) as rt:
        rt.update(audio=audio_input())
        rt.append(bytes(48000 * 1), chunk=48000)  # 1 s
        rt.append(bytes(48000 * 3 // 2), chunk=48000 * 3 // 2)  # 1.5 s more: over the 2 s limit
        event = rt.next()
        assert event["error"]["code"] == "input_audio_buffer_full"
        rt.send({"type": "input_audio_buffer.clear"})
        assert rt.next()["type"] == "input_audio_buffer.cleared"
        rt.append(bytes(48000 * 3 // 2), chunk=48000 * 3 // 2)  # fits after the clear
        rt.send({"type": "input_audio_buffer.commit"})
        assert rt.next()["type"] == "input_audio_buffer.committed"


def test_a_vanishing_client_frees_its_decoding_at_once(probed):
    probe = Probe(hold_after_first=True)
    with probed(probe) as base:
        rt = Socket(base)
        rt.update(audio=audio_input())
        rt.append(pcm24(speechlike(65.0)), chunk=48000 * 10)
        rt.send({"type": "input_audio_buffer.commit"})
        deadline = time.monotonic() + 30
        while not probe.produced:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        health = httpx.get(base + "/health").json()
        assert health["queue"]["running"] == 1
        rt.ws.close()
        deadline = time.monotonic() + 5
        while httpx.get(base + "/health").json()["queue"]["running"]:
            assert time.monotonic() < deadline, "the slot was not freed"
            time.sleep(0.05)
        # The engine, parked mid-file, stops at its next segment instead of decoding on.
        probe.release.set()
        assert probe.finished.wait(10)
        assert probe.closed_early


def test_a_turn_refused_by_a_full_queue_fails_and_the_session_goes_on(probed, script):
    probe = Probe(hold_after_first=True)
    with probed(probe, max_concurrent=1, max_queue=0) as base:
        # An HTTP request holds the only decoding slot, parked mid-file.
        holder = threading.Thread(target=lambda: httpx.post(
            base + "/v1/audio/transcriptions", data={"model": "whisper-1"},
            files={"file": ("long.wav", encode(speechlike(65.0), "wav"), "audio/wav")}, timeout=60,
        ))  # fmt: skip
        holder.start()
        deadline = time.monotonic() + 30
        while not probe.produced:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with Socket(base) as rt:
            rt.update(audio=audio_input())
            rt.append(WIRED_AUDIO)
            rt.send({"type": "input_audio_buffer.commit"})
            events = rt.until("conversation.item.input_audio_transcription.failed")
            failed = events[-1]
            assert failed["error"]["code"] == "rate_limit_exceeded" and failed["error"]["type"] == "requests"
            assert failed["item_id"] == events[0]["item_id"]
            probe.release.set()
            holder.join(60)
            # The slot is free again: the next turn is transcribed.
            rt.append(WIRED_AUDIO)
            rt.send({"type": "input_audio_buffer.commit"})
            assert rt.until("conversation.item.input_audio_transcription.completed")[-1]["transcript"] == text_of(script)
