"""Property-based fuzzing of the live server: schemathesis cases generated from the app's own
/openapi.json (valid and schema-violating), plus our own generators of broken multipart bodies
and broken audio. One property everywhere: never a 5xx, never a hang (every request carries a
timeout), and every error is OpenAI's envelope as `application/json`; the server answers
/health after each case.

CI runs a bounded number of examples per test; a nightly-style run raises it:

    EARSHOT_FUZZ_EXAMPLES=2000 uv run pytest tests/test_fuzz.py
"""

from __future__ import annotations

import json
import os
import typing

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from app.protocol import TranscriptionRequest, TranslationRequest
from tests import hostile_audio, hostile_multipart
from tests.audio_fixtures import encode, speechlike

EXAMPLES = int(os.environ.get("EARSHOT_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the property has its own timeouts; model runs vary with the machine
    database=None,
    suppress_health_check=list(HealthCheck),
)
TIMEOUT = 60
ENVELOPE_KEYS = {"message", "type", "param", "code"}
OPERATIONS = [
    ("POST", "/v1/audio/transcriptions"),
    ("POST", "/v1/audio/translations"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model_id}"),
    ("GET", "/health"),
    ("GET", "/metrics"),
]
SHORT_WAV = encode(speechlike(1.0), "wav")


def assert_contract(status: int, headers, body: bytes, base_url: str) -> None:
    assert status < 500, (status, body[:500])
    if status >= 400:
        content_type = headers.get("content-type")
        if isinstance(content_type, list):  # schemathesis keeps every value of a header
            content_type = content_type[-1]
        assert content_type == "application/json", (status, headers, body[:300])
        payload = json.loads(body)
        assert set(payload) == {"error"} and set(payload["error"]) == ENVELOPE_KEYS, payload
        assert isinstance(payload["error"]["message"], str) and payload["error"]["message"]
    assert httpx.get(base_url + "/health", timeout=10).status_code == 200


@pytest.fixture(scope="module")
def schema(server):
    return schemathesis.openapi.from_dict(httpx.get(server.base_url + "/openapi.json", timeout=10).json())


def test_every_operation_is_fuzzed(schema):
    found = {(op.method.upper(), op.path) for op in (result.ok() for result in schema.get_all_operations())}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("model", [TranscriptionRequest, TranslationRequest], ids=["transcriptions", "translations"])
def test_openapi_lists_every_form_field(server, model):
    """The published multipart schema is generated from the request models, enums included."""
    spec = httpx.get(server.base_url + "/openapi.json").json()
    path = "/v1/audio/" + ("transcriptions" if model is TranscriptionRequest else "translations")
    body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(body["properties"]) == set(model.model_fields)
    assert body["required"] == ["file", "model"]
    assert body["properties"]["file"] == {"type": "string", "format": "binary"}
    formats = typing.get_args(model.model_fields["response_format"].annotation)
    assert body["properties"]["response_format"]["enum"] == list(formats)
    assert body["properties"]["temperature"]["minimum"] == 0 and body["properties"]["temperature"]["maximum"] == 1


# Some generated cases get real audio (valid, damaged or adversarial) and a served model name,
# so that fuzzing reaches decoding and the engine instead of stopping at validation.
AUDIO = st.sampled_from(
    [
        None,
        SHORT_WAV,
        hostile_audio.valid("ogg"),
        hostile_audio.valid("mp3")[:700],
        hostile_audio.float_wav(speechlike(0.5) * 1e30),
        hostile_audio.wav(1, 1, 16, b"\0\1" * 64),
        hostile_audio.flac_constant(20_000),  # beyond the default cap: decoding stops there
        b"",
    ]
)


@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_schema_driven_cases(server, schema, method, path):
    operation = schema[path][method]
    cases = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(GenerationMode.NEGATIVE)

    @FUZZ
    @given(case=cases, audio=AUDIO, served_model=st.booleans())
    def check(case, audio, served_model):
        if isinstance(case.body, dict):
            if audio is not None:
                case.body["file"] = audio
            if served_model:
                case.body["model"] = "whisper-1"
        response = case.call(base_url=server.base_url, timeout=TIMEOUT)
        assert_contract(response.status_code, response.headers, response.content, server.base_url)

    check()


@FUZZ
@given(case=hostile_multipart.broken_bodies(SHORT_WAV))
def test_broken_multipart_bodies(server, case):
    content_type, body = case
    resp = httpx.post(
        server.v1 + "/audio/transcriptions", content=body, headers={"content-type": content_type}, timeout=TIMEOUT
    )
    assert_contract(resp.status_code, resp.headers, resp.content, server.base_url)


@st.composite
def broken_audio(draw) -> tuple[str, bytes]:
    ext = draw(st.sampled_from(hostile_audio.EXTENSIONS))
    data = bytearray(hostile_audio.valid(ext))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(0, len(data) - 1)))
        kind = draw(st.sampled_from(["cut", "flip", "zero", "splice", "repeat"]))
        if kind == "cut":
            del data[at:]
        elif kind == "flip":
            data[at : at + 1] = bytes([draw(st.integers(0, 255))])
        elif kind == "zero":
            data[at : at + draw(st.integers(1, 512))] = b"\0" * draw(st.integers(0, 512))
        elif kind == "splice":
            other = hostile_audio.valid(draw(st.sampled_from(hostile_audio.EXTENSIONS)))
            data[at:at] = other[: draw(st.integers(1, 4096))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 1024))] * draw(st.integers(2, 64))
    # Named by its container, by another container, or not named at all (sniffed).
    filename = draw(st.sampled_from([f"a.{ext}", f"a.{draw(st.sampled_from(hostile_audio.EXTENSIONS))}", "upload"]))
    return filename, bytes(data)


@FUZZ
@given(case=broken_audio(), model=st.sampled_from(["whisper-1", "gpt-4o-transcribe"]))
def test_broken_audio(server, case, model):
    filename, data = case
    resp = httpx.post(
        server.v1 + "/audio/transcriptions",
        data={"model": model, "response_format": "json"},
        files={"file": (filename, data, "application/octet-stream")},
        timeout=TIMEOUT,
    )
    assert_contract(resp.status_code, resp.headers, resp.content, server.base_url)
    if resp.status_code == 200:
        assert isinstance(resp.json()["text"], str)
