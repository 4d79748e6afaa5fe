"""Raw HTTP against the live server: exact bodies, content types, envelopes, chunked uploads."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from app.render import timestamp
from tests.audio_fixtures import CONTAINERS, encode, speechlike

ENVELOPE_KEYS = {"message", "type", "param", "code"}


def post(http: httpx.Client, data: dict | list, wav: bytes | None, filename="a.wav", path="transcriptions", **kw):
    files = {"file": (filename, wav, "audio/x-wav")} if wav is not None else None
    return http.post(f"/v1/audio/{path}", data=data, files=files, **kw)


def script_text(script, task="transcribe"):
    return "".join(s.text for s in getattr(script, task)).strip()


def assert_error(resp: httpx.Response, status: int, param=None, code=None, message=None):
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == ENVELOPE_KEYS, body
    if param is not None:
        assert body["error"]["param"] == param, body
    if code is not None:
        assert body["error"]["code"] == code, body
    if message is not None:
        assert re.search(message, body["error"]["message"]), body
    assert resp.headers["x-request-id"].startswith("req_")
    return body["error"]


def test_json_is_compact_with_duration_usage(http, wav, script):
    resp = post(http, {"model": "whisper-1"}, wav)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert re.fullmatch(r"req_[0-9a-f]{32}", resp.headers["x-request-id"])
    expected = {"text": script_text(script), "usage": {"type": "duration", "seconds": 4}}
    assert resp.content == json.dumps(expected, separators=(",", ":")).encode()


def ends_in_audio(segment, seconds: float = 4.0) -> float:
    """A scripted segment's end as served: the script's last timestamp lies past the 4 s test
    audio, in the padding of its window, and no segment may end after the audio does."""
    return min(segment.end, seconds)


def test_text_srt_vtt_bytes(http, wav, script):
    segs = script.transcribe
    resp = post(http, {"model": "whisper-1", "response_format": "text"}, wav)
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    assert resp.text == script_text(script) + "\n"

    resp = post(http, {"model": "whisper-1", "response_format": "srt"}, wav)
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    cues = "".join(
        f"{i}\n{timestamp(s.start, ',')} --> {timestamp(ends_in_audio(s), ',')}\n{s.text.strip()}\n\n"
        for i, s in enumerate(segs, start=1)
    )
    assert resp.text == cues + "\n"

    resp = post(http, {"model": "whisper-1", "response_format": "vtt"}, wav)
    assert resp.headers["content-type"] == "text/plain; charset=utf-8"
    cues = "".join(f"{timestamp(s.start, '.')} --> {timestamp(ends_in_audio(s), '.')}\n{s.text.strip()}\n\n" for s in segs)
    assert resp.text == "WEBVTT\n\n" + cues


def test_verbose_json_segments_and_words(http, wav, script):
    resp = post(
        http,
        {"model": "whisper-1", "response_format": "verbose_json", "timestamp_granularities[]": ["word", "segment"]},
        wav,
    )
    body = resp.json()
    assert list(body) == ["task", "language", "duration", "text", "segments", "words", "usage"]
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert body["duration"] == pytest.approx(4.0)
    assert body["text"] == script_text(script)
    assert [s["text"] for s in body["segments"]] == [s.text for s in script.transcribe]
    assert [s["id"] for s in body["segments"]] == list(range(len(script.transcribe)))
    # With word timings, faster-whisper snaps segment bounds to the first and last word.
    words = body["words"]
    assert body["segments"][0]["start"] == words[0]["start"]
    assert body["segments"][-1]["end"] == words[-1]["end"]
    assert " ".join(w["word"] for w in body["words"]) == " ".join(script_text(script).split())
    starts = [w["start"] for w in body["words"]]
    assert starts == sorted(starts)
    assert all(w["start"] <= w["end"] for w in body["words"])


def test_verbose_json_segment_times_are_the_decoded_timestamps(http, wav, script):
    body = post(http, {"model": "whisper-1", "response_format": "verbose_json"}, wav).json()
    assert "words" not in body
    assert [(s["start"], s["end"], s["text"]) for s in body["segments"]] == [
        (s.start, ends_in_audio(s), s.text) for s in script.transcribe
    ]
    for seg in body["segments"]:
        assert seg["avg_logprob"] <= 0 and 0 <= seg["no_speech_prob"] <= 1 and seg["temperature"] == 0.0
        assert seg["tokens"] and seg["compression_ratio"] > 0


def test_verbose_json_words_only_has_no_segments(http, wav):
    resp = post(http, {"model": "whisper-1", "response_format": "verbose_json", "timestamp_granularities[]": "word"}, wav)
    body = resp.json()
    assert "segments" not in body and body["words"]


def test_translation(http, wav, script):
    resp = post(http, {"model": "whisper-1", "response_format": "verbose_json"}, wav, path="translations")
    body = resp.json()
    assert body["task"] == "translate" and body["language"] == "english"
    assert body["text"] == script_text(script, "translate")


def test_gpt4o_json_token_usage_and_logprobs(http, wav, script):
    resp = post(http, {"model": "gpt-4o-transcribe", "include[]": "logprobs"}, wav)
    body = resp.json()
    assert list(body) == ["text", "logprobs", "usage"]
    assert body["text"] == script_text(script)
    tokens = body["logprobs"]
    assert "".join(t["token"] for t in tokens).strip() == script_text(script)
    for t in tokens:
        assert bytes(t["bytes"]).decode() == t["token"]
        assert t["logprob"] <= 0
    usage = body["usage"]
    assert usage["type"] == "tokens"
    assert usage["input_token_details"] == {"text_tokens": 0, "audio_tokens": 200}
    assert usage["input_tokens"] == 200
    assert usage["output_tokens"] > len(tokens)  # text plus timestamp tokens
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_prompt_counts_as_text_tokens(http, wav):
    resp = post(http, {"model": "gpt-4o-mini-transcribe", "prompt": "Hello world"}, wav)
    assert resp.json()["usage"]["input_token_details"]["text_tokens"] == 2


@pytest.mark.parametrize("ext", sorted(CONTAINERS))
def test_every_container_decodes(http, ext, script):
    resp = post(http, {"model": "whisper-1", "response_format": "text"}, encode(speechlike(2.0), ext), f"clip.{ext}")
    assert resp.status_code == 200, resp.text
    assert resp.text == script_text(script) + "\n"


def test_unnamed_upload_is_sniffed(http, wav, script):
    resp = http.post(
        "/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("upload", wav, "application/octet-stream")},
    )
    assert resp.json()["text"] == script_text(script)


def test_file_first_and_chunked_transfer(http, wav, script):
    boundary = "xYzBoundary"
    parts = [
        (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
         "Content-Type: audio/wav\r\n\r\n").encode() + wav + b"\r\n",
        f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'.encode(),
        f"--{boundary}--\r\n".encode(),
    ]

    def body():
        for part in parts:
            for i in range(0, len(part), 4096):
                yield part[i : i + 4096]

    resp = http.post(
        "/v1/audio/transcriptions",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert resp.request.headers.get("transfer-encoding") == "chunked"
    assert resp.status_code == 200, resp.text
    assert resp.json()["text"] == script_text(script)


def test_silence_is_empty_text(http):
    silent = encode(speechlike(2.0) * 0, "wav")
    resp = post(http, {"model": "whisper-1", "response_format": "verbose_json"}, silent)
    assert resp.status_code == 200
    body = resp.json()
    assert body["text"] == "" and body["segments"] == []
    resp = post(http, {"model": "whisper-1", "response_format": "srt"}, silent)
    assert resp.status_code == 200 and resp.text == ""


def test_models_list_and_retrieve(http, whisper_model_dir):
    body = http.get("/v1/models").json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    for name in ["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe-2025-12-15",
                 "gpt-4o-transcribe-diarize", whisper_model_dir.name]:
        assert name in ids
    for m in body["data"]:
        assert set(m) == {"id", "object", "created", "owned_by"} and m["object"] == "model"
    assert http.get("/v1/models/whisper-1").json()["id"] == "whisper-1"
    assert_error(http.get("/v1/models/nope"), 404, code="model_not_found")


def test_native_name_accepts_everything(http, wav, whisper_model_dir, script):
    resp = post(http, {"model": whisper_model_dir.name, "response_format": "srt", "timestamp_granularities[]": "word"}, wav)
    assert resp.status_code == 200
    resp = post(http, {"model": whisper_model_dir.name, "include[]": "logprobs"}, wav)
    assert resp.json()["logprobs"]


BAD_REQUESTS = [
    # (form fields, expected param, expected code, message pattern)
    ({}, "model", "missing_required_parameter", "model"),
    ({"model": "whisper-2"}, "model", "model_not_found", "invalid model ID"),
    ({"model": "whisper-1", "response_format": "xml"}, "response_format", "invalid_value", "xml"),
    ({"model": "gpt-4o-transcribe", "response_format": "verbose_json"}, "response_format", "unsupported_value",
     r"^response_format 'verbose_json' is not compatible with model 'gpt-4o-transcribe'\. Use 'json' or 'text' instead\.$"),
    ({"model": "whisper-1", "temperature": "1.5"}, "temperature", "decimal_above_max_value", None),
    ({"model": "whisper-1", "temperature": "-0.1"}, "temperature", "decimal_below_min_value", None),
    ({"model": "whisper-1", "temperature": "hot"}, "temperature", "invalid_type", None),
    ({"model": "whisper-1", "language": "xx"}, "language", "invalid_value", "ISO-639-1"),
    ({"model": "whisper-1", "response_format": "verbose_json", "timestamp_granularities[]": "char"},
     "timestamp_granularities", "invalid_value", None),
    ({"model": "whisper-1", "timestamp_granularities[]": "word"}, "timestamp_granularities", "unsupported_value", None),
    ({"model": "whisper-1", "include[]": "logprobs"}, "include", "unsupported_value", None),
    ({"model": "gpt-4o-transcribe", "include[]": "tokens"}, "include", "invalid_value", None),
    ({"model": "gpt-4o-transcribe", "include[]": "logprobs", "response_format": "text"}, "include", "unsupported_value", None),
    ({"model": "whisper-1", "chunking_strategy": "manual"}, "chunking_strategy", "invalid_value", None),
    ({"model": "whisper-1", "chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "2"},
     "chunking_strategy", "invalid_value", "threshold"),
    ({"model": "whisper-1", "chunking_strategy[type]": "client_vad"}, "chunking_strategy", "invalid_value", "type"),
    ({"model": "whisper-1", "chunking_strategy": '{"type":"server_vad","silence_duration_ms":-5}'},
     "chunking_strategy", "invalid_value", "silence_duration_ms"),
    ({"model": "whisper-1", "known_speaker_names[]": ["a", "b", "c", "d", "e"],
      "known_speaker_references[]": ["data:audio/wav;base64,AA=="] * 5}, "known_speaker_names", "array_above_max_length", None),
    ({"model": "whisper-1", "known_speaker_names[]": ["a"]}, "known_speaker_names", "invalid_value", "same number"),
    ({"model": "whisper-1", "known_speaker_names[]": ["a"], "known_speaker_references[]": ["http://x/a.wav"]},
     "known_speaker_references", "invalid_value", "data URL"),
    ({"model": "whisper-1", "stream": "maybe"}, "stream", "invalid_type", None),
    ({"model": "gpt-4o-transcribe-diarize", "prompt": "hi"}, "prompt", "unsupported_value", None),
]


@pytest.mark.parametrize("data,param,code,message", BAD_REQUESTS)
def test_bad_fields_are_400_with_envelope(http, wav, data, param, code, message):
    assert_error(post(http, data, wav), 400, param=param, code=code, message=message)


def test_accepted_spellings(http, wav):
    ok = [
        {"model": "whisper-1", "temperature": "0"},
        {"model": "whisper-1", "temperature": "0.0"},
        {"model": "whisper-1", "temperature": "1e-1"},
        {"model": "whisper-1", "stream": "false"},
        {"model": "whisper-1", "language": "EN"},
        {"model": "whisper-1", "chunking_strategy": "auto"},
        {"model": "whisper-1", "chunking_strategy": '{"type": "server_vad", "threshold": 0.3}'},
        {"model": "whisper-1", "chunking_strategy[type]": "server_vad", "chunking_strategy[prefix_padding_ms]": "0"},
        {"model": "whisper-1", "response_format": "verbose_json", "timestamp_granularities": '["word"]'},
        {"model": "whisper-1", "unknown_field": "ignored"},
        {"model": "whisper-1", "language": ""},
    ]
    for data in ok:
        resp = post(http, data, wav)
        assert resp.status_code == 200, (data, resp.text)


def test_missing_file_and_file_as_text(http, wav):
    assert_error(post(http, {"model": "whisper-1"}, None), 400, param="file", code="missing_required_parameter")
    resp = http.post("/v1/audio/transcriptions", files={"model": (None, "whisper-1"), "file": (None, "not a file")})
    assert_error(resp, 400, param="file", code="invalid_type")


def test_not_multipart_is_400(http):
    assert_error(http.post("/v1/audio/transcriptions", json={"model": "whisper-1"}), 400, message="multipart")
    assert_error(
        http.post("/v1/audio/transcriptions", content=b"garbage", headers={"content-type": "multipart/form-data"}),
        400,
    )
    resp = http.post(
        "/v1/audio/transcriptions",
        content=b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1",
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert_error(resp, 400)


def test_file_format_errors(http, wav):
    supported = r"Supported formats: \['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', 'ogg', 'wav', 'webm'\]$"
    assert_error(post(http, {"model": "whisper-1"}, wav, "a.txt"), 400, message="^Unrecognized file format. " + supported)
    assert_error(post(http, {"model": "whisper-1"}, b"not audio at all", "a.mp3"), 400,
                 message="^Invalid file format. " + supported)
    assert_error(post(http, {"model": "whisper-1"}, b"not audio", "upload"), 400, message="^Invalid file format")
    assert_error(post(http, {"model": "gpt-4o-transcribe"}, b"not audio", "a.wav"), 400, code="unsupported_format",
                 message=r"^This model does not support the format you provided\.$")


def test_oversized_upload_is_413_while_streaming(server, wav):
    limit = 26_214_400
    body_size = limit + 1024 * 1024

    def chunks():
        yield (b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n')
        for _ in range(body_size // 65536):
            yield b"\0" * 65536

    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        resp = http.post(
            "/v1/audio/transcriptions", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
        )
    err = assert_error(resp, 413, message=rf"^Maximum content size limit \({limit}\) exceeded \(\d+ bytes read\)$")
    assert err["type"] == "server_error"
    read = int(re.search(r"\((\d+) bytes read\)", err["message"]).group(1))
    assert limit < read < limit + 1024 * 1024  # refused at the limit, not after reading everything


def test_oversized_declared_length_is_refused_before_the_body(server):
    """A Content-Length over the limit is answered at once, without waiting for a single body byte."""
    import socket
    from urllib.parse import urlparse

    url = urlparse(server.base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 30000000\r\n\r\n"
        )
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"x-should-retry: false" in head.lower()
    assert json.loads(body)["error"]["message"] == (
        "Maximum content size limit (26214400) exceeded (30000000 bytes declared)"
    )


def test_unknown_route_and_method_use_envelope(http):
    assert_error(http.get("/v1/nothing"), 404)
    assert_error(http.get("/v1/audio/transcriptions"), 405)


def test_health(http):
    assert http.get("/health").status_code == 200
