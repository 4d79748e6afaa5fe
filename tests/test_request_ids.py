"""Every answer carries an `x-request-id`, and the server's log lines about the request carry the
same id: 2xx, refusals from the route, from the multipart parser and from the HTTP layer, 500s,
and the envelope written for HTTP that cannot be parsed at all."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

from tests.audio_fixtures import encode, speechlike
from tests.hostile_multipart import cases

RID = re.compile(r"req_[0-9a-f]{32}")
WAV = encode(speechlike(1.0), "wav")


def _log_entries(server, rid: str) -> list[dict]:
    # Split at newlines only: str.splitlines() also splits at U+0085 and U+2028, which JSON keeps raw
    # in a logged path (test_fuzz sends such paths to this shared server).
    entries = [json.loads(line) for line in server.log().split("\n") if line.startswith("{")]
    return [e for e in entries if e.get("request_id") == rid]


def _assert_logged(server, rid: str, status: int) -> None:
    # The access line is written once the answer has gone out, so it may trail the client a little.
    deadline = time.monotonic() + 5
    while True:
        mine = _log_entries(server, rid)
        if any(e["logger"] == "earshot.access" and e["status"] == status for e in mine):
            return
        assert time.monotonic() < deadline, (rid, mine)
        time.sleep(0.05)


def _requests():
    multipart = {name: (ctype, body) for name, ctype, body in cases(WAV)}
    broken = next(name for name in multipart if name not in {"charset-unknown", "name-brackets-only",
                                                            "filename-not-utf8"})
    return [
        ("health", "GET", "/health", {}, 200),
        ("models", "GET", "/v1/models", {}, 200),
        ("transcription", "POST", "/v1/audio/transcriptions",
         dict(data={"model": "whisper-1"}, files={"file": ("a.wav", WAV)}), 200),
        ("unknown-model", "POST", "/v1/audio/transcriptions",
         dict(data={"model": "nope"}, files={"file": ("a.wav", WAV)}), 400),
        ("bad-field", "POST", "/v1/audio/transcriptions",
         dict(data={"model": "whisper-1", "temperature": "hot"}, files={"file": ("a.wav", WAV)}), 400),
        ("not-multipart", "POST", "/v1/audio/transcriptions", dict(content=b"{}",
                                                                   headers={"content-type": "application/json"}), 400),
        ("broken-multipart", "POST", "/v1/audio/transcriptions",
         dict(content=multipart[broken][1], headers={"content-type": multipart[broken][0]}), 400),
        ("no-route", "GET", "/v1/nothing", {}, 404),
        ("wrong-method", "GET", "/v1/audio/transcriptions", {}, 405),
    ]


@pytest.mark.parametrize("case", _requests(), ids=lambda c: c[0])
def test_every_answer_has_a_request_id_that_its_log_lines_carry(server, case):
    _, method, path, kwargs, status = case
    try:
        resp = httpx.request(method, server.base_url + path, timeout=60, **kwargs)
    except httpx.HTTPError:
        pytest.fail("no answer")
    if status is not None:
        assert resp.status_code == status, resp.text
    rid = resp.headers.get("x-request-id", "")
    assert RID.fullmatch(rid), resp.headers
    _assert_logged(server, rid, resp.status_code)


@pytest.mark.parametrize(
    "raw,status",
    [
        (b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
         b"Content-Length: 10000000000\r\n\r\nx", 413),
        *((raw, 400) for raw in [
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nBad\x01Header: y\r\n\r\n",
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n",
        b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        ]),
    ],
    ids=["declared-too-large", "header-bytes", "chunk-framing", "content-length", "request-line", "version"],
)
def test_refusals_before_the_route_get_an_id_and_a_log_line(server, raw, status):
    """Answered in the envelope (HTTP that cannot be parsed: `malformed_request`, not uvicorn's
    plain text), with an id its log line carries, and the server still healthy."""
    url = urlparse(server.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(raw)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d" % status), reply
    headers = dict(line.lower().split(b": ", 1) for line in head.split(b"\r\n")[1:])
    rid = headers[b"x-request-id"].decode()
    assert RID.fullmatch(rid)
    assert headers[b"content-type"] == b"application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"] == "malformed_request") is (status == 400)
    _assert_logged(server, rid, status)
    assert httpx.get(server.base_url + "/health").status_code == 200


def test_a_500_has_the_id_and_its_traceback_is_logged_under_it(probed, caplog):
    """An engine that raises mid-decode: the 500 envelope, its id, the traceback logged once under
    that id, and the kept-alive connection still usable afterwards."""
    from tests.inprocess import Probe

    with caplog.at_level(logging.INFO), probed(Probe(fail_after=0)) as base, httpx.Client(base_url=base) as http:
        resp = http.post("/v1/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("a.wav", WAV)})
        assert resp.status_code == 500
        assert set(resp.json()["error"]) == {"message", "type", "param", "code"}
        rid = resp.headers["x-request-id"]
        assert RID.fullmatch(rid)
        assert http.get("/health").status_code == 200  # same connection
    mine = [r for r in caplog.records if getattr(r, "request_id", None) == rid]
    assert sum(1 for r in mine if r.exc_info) == 1, [r.getMessage() for r in mine]
    assert any(r.name == "earshot.access" and r.status == 500 for r in mine)
    assert not any(r.name.startswith("uvicorn") and r.exc_info for r in caplog.records)


def test_refused_keys_have_ids(whisper_model_dir, tmp_path):
    from app.main import create_app
    from app.settings import Settings
    from tests.inprocess import serve_app

    app = create_app(Settings(asr_model=str(whisper_model_dir), models_dir=tmp_path, api_keys=["secret"]))
    with serve_app(app) as base:
        for headers in ({}, {"authorization": "Bearer wrong"}):
            resp = httpx.get(base + "/v1/models", headers=headers)
            assert resp.status_code == 401 and RID.fullmatch(resp.headers["x-request-id"])


def test_ids_differ(server):
    ids = {httpx.get(server.base_url + "/health").headers["x-request-id"] for _ in range(20)}
    assert len(ids) == 20
    assert np.all([RID.fullmatch(i) for i in ids])
