"""The official Python SDK, a 1.x release and the latest, with strict response validation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.sdk_runs import SDK_1X, run_sdk_checks

HERE = Path(__file__).parent


def run_checks(sdk: str, server, audio_path: Path, native: str) -> dict:
    speech = HERE / "assets" / "speech" / "fox.ogg"
    return run_sdk_checks(sdk, "python_checks.py", server.v1, str(audio_path), native, str(speech))


@pytest.fixture(scope="module")
def sdk_runs(server, wav, whisper_model_dir, tmp_path_factory):
    """Both SDKs' check scripts, started at once: each is a client process that mostly waits on the
    server (whose wired model says its script whatever else it decodes meanwhile)."""
    path = tmp_path_factory.mktemp("sdk") / "speech.wav"
    path.write_bytes(wav)
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield {sdk: pool.submit(run_checks, sdk, server, path, whisper_model_dir.name) for sdk in ("latest", SDK_1X)}


@pytest.fixture(scope="module", params=["latest", SDK_1X])
def sdk(request, sdk_runs):
    return sdk_runs[request.param].result()


def ok(sdk, name):
    assert "ok" in sdk[name], sdk[name]
    return sdk[name]["ok"]


def text_of(script, task="transcribe"):
    return "".join(s.text for s in getattr(script, task)).strip()


def test_version(sdk, request):
    expected = "1.109.1" if SDK_1X in request.node.callspec.id else None
    if expected:
        assert sdk["version"] == expected
    else:
        assert int(sdk["version"].split(".")[0]) >= 2


def test_json(sdk, script):
    got = ok(sdk, "json")
    assert got["type"] == "Transcription"
    assert got["value"]["text"] == text_of(script)
    assert got["value"].get("usage", {"type": "duration", "seconds": 4}) == {"type": "duration", "seconds": 4}


def test_text_formats(sdk, script):
    assert ok(sdk, "text")["value"] == text_of(script) + "\n"
    assert ok(sdk, "mini_text")["value"] == text_of(script) + "\n"
    srt = ok(sdk, "srt")["value"]
    assert srt.startswith("1\n00:00:") and srt.count(" --> ") == len(script.transcribe)
    vtt = ok(sdk, "vtt")["value"]
    assert vtt.startswith("WEBVTT\n\n00:00:") and vtt.count(" --> ") == len(script.transcribe)


def test_verbose(sdk, script):
    got = ok(sdk, "verbose")
    assert got["type"] == "TranscriptionVerbose"
    value = got["value"]
    assert value["language"] == "english" and value["text"] == text_of(script)
    assert [s["text"] for s in value["segments"]] == [s.text for s in script.transcribe]
    assert [w["word"] for w in value["words"]] == text_of(script).split()
    default = ok(sdk, "verbose_default")["value"]
    assert "words" not in default and len(default["segments"]) == len(script.transcribe)
    assert ok(sdk, "native")["value"]["segments"]


def test_logprobs_and_token_usage(sdk, script):
    value = ok(sdk, "logprobs")["value"]
    assert value["text"] == text_of(script)
    assert "".join(lp["token"] for lp in value["logprobs"]).strip() == text_of(script)
    assert value["usage"]["type"] == "tokens" and value["usage"]["input_token_details"]["audio_tokens"] == 200


def test_stream(sdk, script):
    events = ok(sdk, "stream")["value"]
    types = [e["type"] for e in events]
    assert types.count("transcript.text.done") == 1 and types[-1] == "transcript.text.done"
    deltas = [e for e in events if e["type"] == "transcript.text.delta"]
    assert deltas and "".join(d["delta"] for d in deltas) == events[-1]["text"] == text_of(script)
    assert sum(len(d["logprobs"]) for d in deltas) == len(events[-1]["logprobs"])
    assert events[-1]["usage"]["type"] == "tokens"
    # whisper-1 answers a stream request with the ordinary JSON body: the SDK iterates no events.
    assert ok(sdk, "stream_whisper1")["value"] == []


def test_uploads(sdk, script):
    assert ok(sdk, "bytes_upload")["value"]["text"] == text_of(script)
    # Chunked: the wired model says its script once per speech chunk.
    for name in ("chunking_object", "chunking_auto"):
        text = ok(sdk, name)["value"]["text"]
        repeats = text.count(text_of(script))
        assert repeats >= 1 and text == " ".join([text_of(script)] * repeats), name


def test_translations(sdk, script):
    assert ok(sdk, "translation")["value"]["text"] == text_of(script, "translate")
    verbose = ok(sdk, "translation_verbose")["value"]
    assert verbose["language"] == "english" and verbose["text"] == text_of(script, "translate")
    assert ok(sdk, "translation_text")["value"] == text_of(script, "translate") + "\n"


def test_models(sdk, whisper_model_dir):
    ids = ok(sdk, "models")["value"]
    assert {"whisper-1", "gpt-4o-transcribe", "gpt-4o-transcribe-diarize", whisper_model_dir.name} <= set(ids)
    assert ok(sdk, "model")["value"]["id"] == "whisper-1"
    assert ok(sdk, "request_id")["value"].startswith("req_")


@pytest.mark.parametrize(
    "name,cls,status,param,code",
    [
        ("err_missing_model", "NotFoundError", 404, "model", "model_not_found"),
        ("err_unknown_model", "BadRequestError", 400, "model", "model_not_found"),
        ("err_verbose_gpt4o", "BadRequestError", 400, "response_format", "unsupported_value"),
        ("err_temperature", "BadRequestError", 400, "temperature", "decimal_above_max_value"),
        ("err_format", "BadRequestError", 400, None, None),
        ("err_undecodable", "BadRequestError", 400, None, None),
        ("err_undecodable_gpt4o", "BadRequestError", 400, "file", "unsupported_format"),
        ("err_too_large", "APIStatusError", 413, None, None),
    ],
)
def test_errors(sdk, name, cls, status, param, code):
    got = sdk[name]
    assert got.get("error") == cls, got
    assert got["status"] == status and got["param"] == param and got["code"] == code
    assert got["message"]
