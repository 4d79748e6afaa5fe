"""Hostile input against a live server: broken multipart bodies, truncated and stalled uploads,
damaged and adversarial audio in every container, decompression bombs, filename injection, and
floods that would make memory balloon.

Every request asserts the same contract: an answer below 500; when it is an error, OpenAI's
envelope (`message`, `type`, `param`, `code`) as `application/json`; and a server that still
answers `/health` afterwards. Most cases also pin the exact outcome.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest

from app import audio as audio_io
from app.errors import APIError
from tests import hostile_audio, hostile_multipart
from tests.audio_fixtures import encode, speechlike
from tests.conftest import start_wired_server, stop_server

ENVELOPE_KEYS = {"message", "type", "param", "code"}
CAP_SECONDS = 1200
BYTES_PER_SECOND = 16000 * 4  # decoded: 16 kHz mono float32
MB = 1 << 20


def script_text(script) -> str:
    return "".join(s.text for s in script.transcribe).strip()


def assert_answered(status: int, headers, body: bytes, base_url: str) -> dict | None:
    """Below 500, a request id, the envelope on errors, and the server still healthy; the error
    (or None)."""
    assert status < 500, (status, body[:300])
    assert re.fullmatch(r"req_[0-9a-f]{32}", headers.get("x-request-id", "")), headers
    error = None
    if status >= 400:
        assert headers["content-type"] == "application/json", headers
        payload = json.loads(body)
        assert set(payload) == {"error"} and set(payload["error"]) == ENVELOPE_KEYS, payload
        error = payload["error"]
    assert httpx.get(base_url + "/health", timeout=10).status_code == 200
    return error


def checked(resp: httpx.Response, base_url: str) -> dict | None:
    return assert_answered(resp.status_code, resp.headers, resp.content, base_url)


def transcribe(base_url: str, audio: bytes, filename: str = "a.wav", timeout: float = 120, **data) -> httpx.Response:
    return httpx.post(
        base_url + "/v1/audio/transcriptions",
        data={"model": "whisper-1", **data},
        files={"file": (filename, audio, "application/octet-stream")},
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def capped(whisper_model_dir, tmp_path_factory):
    """A server of its own (its memory and log are measured): a 20-minute cap, 1 s body timeout."""
    live = start_wired_server(
        whisper_model_dir, tmp_path_factory, "capped", EARSHOT_MAX_AUDIO_SECONDS=str(CAP_SECONDS), EARSHOT_BODY_TIMEOUT="1"
    )
    yield live
    stop_server(live)
    assert "unhandled error" not in live.log(), live.log()[-3000:]


class Memory:
    """Peak resident memory of a server process: reset the high-water mark, then read it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def _status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def reset(self) -> int:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return self._status("VmRSS")

    def peak(self) -> int:
        return self._status("VmHWM")


# --- multipart ---------------------------------------------------------------------------------

# Cases that are odd but valid; everything else must be refused with a 400.
ACCEPTED = {"charset-unknown", "name-brackets-only", "filename-not-utf8"}
BROKEN = hostile_multipart.cases(encode(speechlike(1.0), "wav"))


@pytest.mark.parametrize("content_type,body", [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_multipart_is_answered(server, script, request, content_type, body):
    case = request.node.callspec.id
    resp = httpx.post(
        server.v1 + "/audio/transcriptions", content=body, headers={"content-type": content_type}, timeout=60
    )
    error = checked(resp, server.base_url)
    if case in ACCEPTED:
        assert resp.status_code == 200 and resp.json()["text"] == script_text(script), resp.text
    else:
        assert resp.status_code == 400 and error is not None, resp.text


def test_refusals_say_what_was_wrong(server):
    audio = encode(speechlike(1.0), "wav")
    cases = dict((c[0], c[1:]) for c in hostile_multipart.cases(audio))
    expected = {
        "cut-in-file": "ended before the closing boundary",
        "fields-6x1mb": "Text fields exceeded",
        "fields-5000": "Too many fields",
        "files-50": "Too many files",
        "field-2mb": "exceeded maximum size",
        "name-nested-1000": "nested too deeply",
        "json-object-deep": "not valid JSON",
        "vad-ms-huge": "less than or equal to 3600000",
        "urlencoded-many-fields": "Too many fields",
    }
    for case, message in expected.items():
        content_type, body = cases[case]
        resp = httpx.post(server.v1 + "/audio/transcriptions", content=body, headers={"content-type": content_type})
        error = checked(resp, server.base_url)
        assert resp.status_code == 400 and message in error["message"], (case, error)


def raw_exchange(base_url: str, head: bytes, body: bytes = b"", half_close: bool = False, wait: float = 20):
    """Send exactly these bytes; the reply (possibly empty) once the server closes or `wait` ends."""
    url = urlparse(base_url)
    reply = b""
    with socket.create_connection((url.hostname, url.port), timeout=wait) as sock:
        sock.sendall(head + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            reply += chunk
    return reply


def parse_reply(reply: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def _post_head(length: int | None) -> bytes:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: {hostile_multipart.content_type()}\r\n{framing}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_stalled_upload_is_refused_not_waited_for(capped, framing):
    """A body that stops arriving gets a 408 after EARSHOT_BODY_TIMEOUT, and the connection closes."""
    full = hostile_multipart.body(hostile_multipart.request_parts(encode(speechlike(1.0), "wav")))
    if framing == "content-length":
        head, sent = _post_head(len(full)), full[:700]
    else:
        head, sent = _post_head(None), b"%x\r\n" % 700 + full[:700] + b"\r\n"
    started = time.monotonic()
    reply = raw_exchange(capped.base_url, head, sent, wait=20)
    status, headers, body = parse_reply(reply)
    assert time.monotonic() - started < 15  # answered by the timeout, not by the client giving up
    error = assert_answered(status, headers, body, capped.base_url)
    assert status == 408 and error["code"] == "request_timeout", body
    assert headers["connection"] == "close"


@pytest.mark.parametrize("cut", [0, 10, 300, 700])
def test_body_cut_by_a_half_closed_connection(capped, cut):
    full = hostile_multipart.body(hostile_multipart.request_parts(encode(speechlike(1.0), "wav")))
    reply = raw_exchange(capped.base_url, _post_head(len(full)), full[:cut], half_close=True, wait=10)
    if reply:  # the server may answer before it notices, or just close: both are fine
        status, headers, body = parse_reply(reply)
        assert_answered(status, headers, body, capped.base_url)
    assert httpx.get(capped.base_url + "/health", timeout=10).status_code == 200


def test_oversized_chunked_upload_is_413_while_streaming(capped):
    """No Content-Length to refuse up front: the count while streaming stops it at the limit."""
    limit = 26_214_400

    def chunks():
        yield (b"--" + hostile_multipart.BOUNDARY
               + b'\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n')
        for _ in range(2 * limit // 65536):
            yield b"\0" * 65536

    resp = httpx.post(
        capped.v1 + "/audio/transcriptions",
        content=chunks(),
        headers={"content-type": hostile_multipart.content_type()},
        timeout=60,
    )
    error = checked(resp, capped.base_url)
    assert resp.status_code == 413 and error["type"] == "server_error"
    read = int(re.search(r"\((\d+) bytes read\)", error["message"]).group(1))
    assert limit < read < limit + MB  # refused at the limit, not after reading 50 MB


# --- audio -------------------------------------------------------------------------------------

def test_every_container_survives_damage_at_the_decoder():
    """Each damaged file either decodes to finite samples in [-1, 1] or is a 400; nothing else."""
    outcomes = {}
    for ext in hostile_audio.EXTENSIONS:
        for name, data in hostile_audio.hostile_files(ext):
            try:
                samples = audio_io.decode(io.BytesIO(data), "whisper", 600)
            except APIError as exc:
                assert exc.status == 400, (ext, name, exc.message)
                outcomes[ext, name] = exc.code or "invalid"
                continue
            assert samples.dtype == np.float32 and samples.ndim == 1, (ext, name)
            assert np.isfinite(samples).all() and np.abs(samples).max(initial=0) <= 1.0, (ext, name)
            outcomes[ext, name] = "decoded"
    # The damage is real: some files of every container are refused, some decode despite it.
    assert "decoded" in outcomes.values() and "invalid" in outcomes.values()


@pytest.mark.parametrize("ext", hostile_audio.EXTENSIONS)
def test_damaged_audio_over_http(server, ext):
    files = dict(hostile_audio.hostile_files(ext))
    for name in ("empty", "cut12", "cut44", "header-noise", "payload-noise"):
        if name not in files:
            continue
        resp = transcribe(server.base_url, files[name], f"a.{ext}")
        error = checked(resp, server.base_url)
        if error is not None:
            assert resp.status_code == 400 and error["message"].startswith(("Invalid file format", "Unsupported audio"))
        else:
            assert "text" in resp.json()


WAV_OUTCOMES = {
    "rate-1hz": "unsupported_audio",
    "rate-384khz": "script",
    "channels-8": "script",
    "channels-64": "unsupported_audio",
    "float-nan-inf": "script",  # made playable before the model sees it
    "float-huge": "script",
    "data-size-4gb": "script",  # a streaming recorder's "unknown length"
    "header-only": "silence",
}


@pytest.mark.parametrize("name,data", hostile_audio.crafted_wavs(), ids=[n for n, _ in hostile_audio.crafted_wavs()])
def test_crafted_wav_headers(server, script, name, data):
    resp = transcribe(server.base_url, data, "a.wav")
    error = checked(resp, server.base_url)
    expected = WAV_OUTCOMES.get(name)
    if expected == "script":
        assert resp.status_code == 200 and resp.json()["text"] == script_text(script), resp.text
    elif expected == "silence":
        assert resp.status_code == 200 and resp.json()["text"] == "", resp.text
    elif expected is not None:
        assert resp.status_code == 400 and error["code"] == expected, resp.text
    else:
        assert resp.status_code in (200, 400), resp.text


def test_unordered_channels_are_averaged(server, script):
    """WAVs without a channel mask (9, 32 channels) have no FFmpeg downmix (they were 'Invalid file
    format'); they decode to the mono signal every channel carries, and are transcribed."""
    mono = audio_io.decode(io.BytesIO(hostile_audio.wav(16000, 1, 16, hostile_audio.pcm16(1.0))))
    for channels in (3, 9, 32):
        data = hostile_audio.wav(16000, channels, 16, hostile_audio.pcm16(1.0, channels=channels))
        decoded = audio_io.decode(io.BytesIO(data))
        assert decoded.shape == mono.shape
        assert np.max(np.abs(decoded - mono)) < 1e-3, channels
    resp = transcribe(server.base_url, data, "multitrack.wav")
    checked(resp, server.base_url)
    assert resp.status_code == 200 and resp.json()["text"] == script_text(script)


def test_sample_rate_change_mid_stream_decodes_everything(server):
    """Concatenated MP3s at different rates (a common podcast edit) used to be 'Invalid file format'."""
    first = _mp3(speechlike(2.0, rate=16000), 16000)
    second = _mp3(speechlike(2.0, rate=44100), 44100)
    decoded = audio_io.decode(io.BytesIO(first + second))
    assert abs(len(decoded) / 16000 - 4.0) < 0.2
    resp = transcribe(server.base_url, first + second, "joined.mp3", response_format="verbose_json")
    checked(resp, server.base_url)
    assert resp.status_code == 200 and abs(resp.json()["duration"] - 4.0) < 0.2


def _mp3(samples: np.ndarray, rate: int) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp3") as out:
        stream = out.add_stream("libmp3lame", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray((samples * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=rate)
        for chunk in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


# --- decompression bombs and memory -------------------------------------------------------------

@pytest.mark.parametrize(
    "filename,make",
    [
        ("bomb.flac", lambda: hostile_audio.flac_constant(3 * CAP_SECONDS)),
        ("bomb.flac", lambda: hostile_audio.flac_constant(3 * CAP_SECONDS, declare_total=True)),
        ("bomb.ogg", lambda: hostile_audio.opus_silence(3 * CAP_SECONDS)),
    ],
    ids=["flac-silence", "flac-silence-declared", "opus-silence"],
)
def test_decompression_bomb_stops_at_the_cap(capped, filename, make):
    """Hours of silence in kilobytes: refused with a 400 naming the setting, and decoding stopped
    at the cap, so memory grew by about the cap's worth of samples, not the bomb's."""
    bomb = make()
    assert len(bomb) < 3 * MB
    memory = Memory(capped.process.pid)
    before = memory.reset()
    resp = transcribe(capped.base_url, bomb, filename)
    error = checked(resp, capped.base_url)
    assert resp.status_code == 400 and error["code"] == "audio_too_long", resp.text
    assert f"({CAP_SECONDS} seconds, EARSHOT_MAX_AUDIO_SECONDS)" in error["message"]
    cap_bytes = CAP_SECONDS * BYTES_PER_SECOND
    assert memory.peak() - before < 1.6 * cap_bytes


@pytest.mark.parametrize(
    "filename,data",
    [("slow.wav", hostile_audio.wav(1, 1, 16, hostile_audio.pcm16(2.0))),
     ("slow.flac", hostile_audio.flac_constant(60, rate=100, value=1000))],
    ids=["wav-1hz", "flac-100hz"],
)
def test_tiny_sample_rates_are_refused_before_upsampling(capped, filename, data):
    """At 1 Hz every stored sample becomes 16000: refused from the header, in kilobytes of memory."""
    memory = Memory(capped.process.pid)
    before = memory.reset()
    resp = transcribe(capped.base_url, data, filename)
    error = checked(resp, capped.base_url)
    assert resp.status_code == 400 and error["code"] == "unsupported_audio" and "sample rate" in error["message"]
    assert memory.peak() - before < 16 * MB


def test_long_audio_is_held_once(capped):
    """Just under the cap, decoded audio exists once: no list of chunks plus a concatenated copy,
    no full-size temporary in the silence check (this one is silent, so the model never runs)."""
    seconds = CAP_SECONDS - 30
    silent = hostile_audio.flac_constant(seconds)
    memory = Memory(capped.process.pid)
    transcribe(capped.base_url, silent, "warm.flac")  # the first long decode also grows thread stacks
    before = memory.reset()
    resp = transcribe(capped.base_url, silent, "long.flac")
    checked(resp, capped.base_url)
    assert resp.status_code == 200 and resp.json()["text"] == ""
    decoded = resp.json()["usage"]["seconds"] * BYTES_PER_SECOND
    assert decoded >= seconds * BYTES_PER_SECOND
    assert memory.peak() - before < 1.25 * decoded


def test_flood_of_text_fields_stays_small(capped):
    """Text parts live in memory: six concurrent 24 MB bodies of text fields are refused after
    5 MiB each instead of each being held whole (and again as decoded strings)."""
    parts = [hostile_multipart.Part(b"f%d" % i, b"v" * 1_000_000) for i in range(24)]
    body = hostile_multipart.body(parts + hostile_multipart.request_parts(b"x"))
    memory = Memory(capped.process.pid)
    before = memory.reset()
    results = []

    def send():
        results.append(httpx.post(capped.v1 + "/audio/transcriptions", content=body,
                                  headers={"content-type": hostile_multipart.content_type()}, timeout=60))

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 6
    for resp in results:
        error = checked(resp, capped.base_url)
        assert resp.status_code == 400 and "Text fields exceeded" in error["message"]
    assert memory.peak() - before < 6 * 24 * MB / 2


# --- filenames ---------------------------------------------------------------------------------

def test_filenames_are_never_paths(server, script, tmp_path):
    audio = encode(speechlike(1.0), "wav")
    target = tmp_path / "escaped.wav"
    for filename in ("../" * 12 + str(target).lstrip("/"), str(target), "a" * 4000 + ".wav"):
        resp = transcribe(server.base_url, audio, filename)
        checked(resp, server.base_url)
        assert resp.status_code == 200 and resp.json()["text"] == script_text(script), (filename[:80], resp.text)
    assert not target.exists()


@pytest.mark.parametrize(
    "filename",
    [b'a.wav"\r\nX-Injected: 1', b"a.wav\r\nX-Injected: 1\r\n", b'a.wav"; name="model', b"a.wav\x00.exe"],
    ids=["quote-crlf", "crlf", "quote-param", "nul"],
)
def test_filename_injection_stays_inside_the_part(server, filename):
    """Raw bytes (HTTP clients escape these): a filename cannot add headers, parameters or hide
    its extension; the outcome is an ordinary answer, never an echo of the injected text."""
    parts = [hostile_multipart.Part(b"model", b"whisper-1"),
             hostile_multipart.Part(b"file", encode(speechlike(1.0), "wav"), filename)]
    resp = httpx.post(server.v1 + "/audio/transcriptions", content=hostile_multipart.body(parts),
                      headers={"content-type": hostile_multipart.content_type()}, timeout=60)
    error = checked(resp, server.base_url)
    assert "x-injected" not in resp.headers
    if error is not None:
        assert resp.status_code == 400 and "X-Injected" not in error["message"]
    if filename.endswith(b".exe"):
        assert error is not None and error["message"].startswith("Unrecognized file format")


def test_decoding_stops_when_its_request_is_abandoned():
    """A set cancel event stops decoding at the next frame, well before the end of a 2 h file."""
    bomb = hostile_audio.flac_constant(2 * 3600)
    cancel = threading.Event()
    frames_seen = []
    original = audio_io._frames

    def counting(container, stream):
        for frame in original(container, stream):
            frames_seen.append(frame.samples)
            if len(frames_seen) == 3:
                cancel.set()
            yield frame

    audio_io._frames = counting
    try:
        with pytest.raises(audio_io.Abandoned):
            audio_io.decode(io.BytesIO(bomb), max_seconds=3 * 3600, cancel=cancel)
    finally:
        audio_io._frames = original
    assert len(frames_seen) == 3  # nothing is read after the frame during which the cancel came
