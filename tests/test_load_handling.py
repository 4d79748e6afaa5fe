"""Serving under load: model manager, back-pressure, timeouts, auth, metrics, logs, shutdown."""

from __future__ import annotations

import json
import re
import signal
import threading
import time

import httpx
import openai
import pytest

from engines.manager import EngineConfig, ModelManager
from tests.audio_fixtures import encode, speechlike
from tests.conftest import start_server
from tests.factories.whisper_model import build_whisper_model
from tests.inprocess import Probe

SHORT = encode(speechlike(2.0), "wav")
LONG = encode(speechlike(65.0), "wav")


def post(base, model="whisper-1", audio=SHORT, timeout=60, **data):
    with httpx.Client(base_url=base, timeout=timeout) as http:
        return http.post("/v1/audio/transcriptions", data={"model": model, **data},
                         files={"file": ("a.wav", audio, "audio/wav")})


def in_thread(fn, *args, **kwargs):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", fn(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, box


def wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


# --- model manager ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("two")
    return build_whisper_model(root / "a"), build_whisper_model(root / "b")


def manager_with_log(tmp_path, **kw):
    loads = []
    manager = ModelManager(EngineConfig(models_dir=tmp_path, compute_type="int8"),
                           on_load=lambda kind, model, s: loads.append(model), **kw)
    return manager, loads


def test_cold_model_loads_once_for_simultaneous_requests(tmp_path, two_models):
    manager, loads = manager_with_log(tmp_path)
    barrier = threading.Barrier(4)
    engines = []

    def use():
        barrier.wait()
        with manager.use("whisper", str(two_models[0])) as engine:
            engines.append(engine)

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert loads == [str(two_models[0])]
    assert len({id(e) for e in engines}) == 1


def test_idle_ttl_unloads_but_never_under_a_request(tmp_path, two_models):
    manager, loads = manager_with_log(tmp_path, ttl=0.2)
    model = str(two_models[0])
    with manager.use("whisper", model):
        assert manager.unload_idle(now=time.monotonic() + 60) == []
    assert manager.loaded() == [("whisper", model)]
    assert manager.unload_idle() == []  # not idle long enough yet
    assert manager.unload_idle(now=time.monotonic() + 1) == [("whisper", model)]
    assert manager.loaded() == []
    with manager.use("whisper", model):
        pass
    assert loads == [model, model]


def test_lru_unloads_least_recently_used_idle_model(tmp_path, two_models):
    a, b = (str(p) for p in two_models)
    manager, _ = manager_with_log(tmp_path, max_loaded=1)
    with manager.use("whisper", a):
        with manager.use("whisper", b):
            # Both busy: over capacity for now rather than pulling a model from under a request.
            assert {m for _, m in manager.loaded()} == {a, b}
        assert {m for _, m in manager.loaded()} == {a}
    with manager.use("whisper", b):
        assert {m for _, m in manager.loaded()} == {b}


def test_never_unload_means_never(tmp_path, two_models):
    manager, _ = manager_with_log(tmp_path, ttl=-1)
    with manager.use("whisper", str(two_models[0])):
        pass
    assert manager.unload_idle(now=time.monotonic() + 10**6) == []


# --- back-pressure, disconnects, timeouts --------------------------------------------------------

def test_full_queue_answers_429_with_retry_after(probed):
    probe = Probe(hold_after_first=True)
    with probed(probe, max_concurrent=1, max_queue=1) as base:
        first, first_box = in_thread(post, base, audio=LONG)
        assert wait_for(lambda: probe.produced == 1)
        second, second_box = in_thread(post, base)
        with httpx.Client(base_url=base) as http:
            assert wait_for(lambda: http.get("/health").json()["queue"]["waiting"] == 1)
            health = http.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "full"
        def refused() -> float:
            with httpx.Client(base_url=base) as http:
                found = re.search(r"^earshot_rejected_total (\S+)$", http.get("/metrics").text, re.M)
            return float(found.group(1))

        assert refused() == 0
        resp = post(base)
        assert resp.status_code == 429
        assert refused() == 1  # /metrics counts the refusals
        assert int(resp.headers["retry-after"]) >= 1
        assert resp.json()["error"] == {
            "message": resp.json()["error"]["message"], "type": "requests", "param": None,
            "code": "rate_limit_exceeded",
        }
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.RateLimitError):
            client.audio.transcriptions.create(file=("a.wav", SHORT), model="whisper-1")
        assert refused() == 2
        probe.release.set()
        first.join(60)
        second.join(60)
        assert first_box["value"].status_code == 200 and second_box["value"].status_code == 200


def test_client_leaving_the_queue_frees_its_place(probed):
    probe = Probe(hold_after_first=True)
    with probed(probe, max_concurrent=1, max_queue=1) as base:
        first, first_box = in_thread(post, base, audio=LONG)
        assert wait_for(lambda: probe.produced == 1)
        # A queued client gives up (its read times out and it closes the connection).
        with pytest.raises(httpx.ReadTimeout):
            post(base, timeout=1.0)
        with httpx.Client(base_url=base) as http:
            assert wait_for(lambda: http.get("/health").json()["queue"]["waiting"] == 0, timeout=5)
        third, third_box = in_thread(post, base)
        with httpx.Client(base_url=base) as http:
            assert wait_for(lambda: http.get("/health").json()["queue"]["waiting"] == 1)
        probe.release.set()
        first.join(60)
        third.join(60)
        assert first_box["value"].status_code == 200 and third_box["value"].status_code == 200


def test_client_leaving_mid_decode_stops_the_engine(probed):
    probe = Probe(hold_after_first=True)
    with probed(probe) as base:
        with pytest.raises(httpx.ReadTimeout):
            post(base, audio=LONG, timeout=1.5)
        probe.release.set()
        assert probe.finished.wait(5) and probe.closed_early
        with httpx.Client(base_url=base) as http:
            assert wait_for(lambda: http.get("/health").json()["queue"]["running"] == 0, timeout=5)


def test_request_timeout_stops_work_with_a_clear_error(probed):
    probe = Probe(hold_after_first=True)
    with probed(probe, request_timeout=1.0) as base:
        resp = post(base, audio=LONG)
        probe.release.set()
        assert resp.status_code == 504
        assert resp.headers["x-should-retry"] == "false"
        error = resp.json()["error"]
        assert error["code"] == "timeout" and "EARSHOT_REQUEST_TIMEOUT" in error["message"]
        assert probe.finished.wait(5) and probe.closed_early


# --- auth ---------------------------------------------------------------------------------------

def test_api_keys(probed, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("sk-file-key-0001\n")
    with probed(Probe(), api_keys=["sk-right-key-9876"], api_keys_file=keys) as base:
        good = openai.OpenAI(base_url=base + "/v1", api_key="sk-right-key-9876", max_retries=0,
                             _strict_response_validation=True)
        assert good.audio.transcriptions.create(file=("a.wav", SHORT), model="whisper-1").text
        from_file = openai.OpenAI(base_url=base + "/v1", api_key="sk-file-key-0001", max_retries=0)
        assert from_file.models.retrieve("whisper-1").id == "whisper-1"
        bad = openai.OpenAI(base_url=base + "/v1", api_key="sk-wrong-key-abcd", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as caught:
            bad.audio.transcriptions.create(file=("a.wav", SHORT), model="whisper-1")
        assert caught.value.code == "invalid_api_key"
        assert "sk-**********abcd" in caught.value.message and "wrong" not in caught.value.message
        with httpx.Client(base_url=base) as http:
            missing = http.get("/v1/models")
            assert missing.status_code == 401
            assert missing.json()["error"]["message"].startswith("You didn't provide an API key")
            assert missing.json()["error"]["type"] == "invalid_request_error"
            assert http.get("/v1/models", headers={"authorization": "Basic sk-right-key-9876"}).status_code == 401
            assert http.get("/health").status_code == 200
            assert http.get("/metrics").status_code == 200


# --- observability, preload, shutdown (live subprocess) -----------------------------------------

@pytest.fixture(scope="module")
def observed_server(whisper_model_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("obs")
    server = start_server(
        {"EARSHOT_ASR_MODEL": str(whisper_model_dir), "EARSHOT_MODELS_DIR": str(logs),
         "EARSHOT_PRELOAD": "whisper-1", "EARSHOT_SHUTDOWN_TIMEOUT": "60"},
        logs / "server.log",
    )
    yield server
    if server.process.poll() is None:
        server.process.kill()


def test_preload_metrics_and_json_logs(observed_server, whisper_model_dir):
    base = observed_server.base_url
    with httpx.Client(base_url=base) as http:
        # Preloaded before any request.
        assert http.get("/health").json()["loaded"] == [str(whisper_model_dir)]
    ok = post(base)
    assert ok.status_code == 200
    stream = post(base, model="gpt-4o-transcribe", stream="true")
    assert stream.status_code == 200
    assert post(base, model="nope").status_code == 400
    with httpx.Client(base_url=base) as http:
        text = http.get("/metrics").text
    assert 'earshot_requests_total{format="json",model="whisper-1",status="200"} 1.0' in text
    assert 'earshot_requests_total{format="invalid",model="invalid",status="400"} 1.0' in text
    assert 'earshot_audio_seconds_total{model="whisper-1"} 2.0' in text
    assert 'earshot_request_duration_seconds_count{model="whisper-1"} 1.0' in text
    assert 'earshot_real_time_factor_count{model="whisper-1"} 1.0' in text
    assert 'earshot_time_to_first_delta_seconds_count{model="gpt-4o-transcribe"} 1.0' in text
    assert "earshot_models_loaded 1.0" in text and "earshot_queue_depth 0.0" in text
    assert 'earshot_model_load_seconds_count{engine="whisper"' in text
    lines = [json.loads(line) for line in observed_server.log().splitlines() if line.startswith("{")]
    rid = ok.headers["x-request-id"]
    mine = [entry for entry in lines if entry.get("request_id") == rid]
    assert any(e["logger"] == "earshot.access" and e["status"] == 200 and e["path"] == "/v1/audio/transcriptions"
               for e in mine)
    assert any(e["logger"] == "earshot.serving" for e in mine)  # the decoding thread logs under the id too


def test_sigterm_drains_in_flight_requests(observed_server):
    base = observed_server.base_url
    worker, box = in_thread(post, base, audio=encode(speechlike(120.0), "wav"), timeout=120)
    assert wait_for(lambda: "Processing audio with duration 02:00" in observed_server.log())
    observed_server.process.send_signal(signal.SIGTERM)
    worker.join(120)
    assert box["value"].status_code == 200
    assert observed_server.process.wait(60) == 0
    # The signal came while the request was decoding (four windows): it was drained, not done before.
    rid = box["value"].headers["x-request-id"]
    lines = [json.loads(line) for line in observed_server.log().splitlines() if line.startswith("{")]
    shutdown = next(i for i, e in enumerate(lines) if e["message"] == "Shutting down")
    answered = next(i for i, e in enumerate(lines) if e.get("request_id") == rid and e["logger"] == "earshot.access")
    assert shutdown < answered, lines[shutdown - 3 :]
