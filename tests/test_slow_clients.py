"""Connections that never finish a request head are closed after EARSHOT_HEAD_TIMEOUT, and while
hundreds of them are held, real requests are answered as usual."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.audio_fixtures import encode, speechlike
from tests.conftest import start_wired_server, stop_server

HEAD_TIMEOUT = 4.0
# Every connection must be closed this soon after its deadline. A timer restarted by each byte
# would hold the dribbling ones until HEAD_TIMEOUT after their last byte: 3 s later than that.
CLOSE_SLACK = 2.0
SILENT, PARTIAL, DRIBBLING = 100, 100, 100


@pytest.fixture(scope="module")
def guarded(whisper_model_dir, tmp_path_factory):
    live = start_wired_server(whisper_model_dir, tmp_path_factory, "guarded", EARSHOT_HEAD_TIMEOUT=str(HEAD_TIMEOUT))
    yield live
    stop_server(live)


def _connect(server) -> socket.socket:
    url = urlparse(server.base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.setblocking(False)
    return sock


def _open_fds(server) -> int:
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def _read_until_closed(sock: socket.socket, received: dict[int, bytes]) -> bytes | None:
    """What the server sent before closing, or None while it keeps the connection open (what has
    arrived so far is kept in `received`)."""
    try:
        while chunk := sock.recv(65536):
            received[id(sock)] = received.get(id(sock), b"") + chunk
    except BlockingIOError:
        return None
    except ConnectionResetError:
        pass
    return received.get(id(sock), b"")


def test_hundreds_of_unfinished_heads_are_closed_and_hold_nobody_up(guarded):
    with httpx.Client(base_url=guarded.base_url, timeout=30) as http:
        assert http.get("/health").status_code == 200
    baseline = _open_fds(guarded)
    wav = encode(speechlike(2.0), "wav")
    silent = [_connect(guarded) for _ in range(SILENT)]
    partial = [_connect(guarded) for _ in range(PARTIAL)]
    dribbling = [_connect(guarded) for _ in range(DRIBBLING)]
    for sock in partial + dribbling:
        sock.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n")
    opened = time.monotonic()
    try:
        # Real clients, on fresh connections, while all of those are held.
        with httpx.Client(base_url=guarded.base_url, timeout=30) as http:
            for _ in range(3):
                assert http.get("/health").status_code == 200
                resp = http.post("/v1/audio/transcriptions", data={"model": "whisper-1"},
                                 files={"file": ("a.wav", wav)})
                assert resp.status_code == 200, resp.text
        assert time.monotonic() - opened < HEAD_TIMEOUT, "the check ran past the head timeout; it proves nothing"

        # A slowloris client sends a header byte now and then; its deadline does not move. (It
        # stops a second before the deadline: a byte arriving as the server closes would make the
        # server's kernel reset the connection, and a reset discards the 408 unread.)
        replies: dict[int, bytes] = {}
        received: dict[int, bytes] = {}
        deadline = opened + HEAD_TIMEOUT + CLOSE_SLACK
        socks = silent + partial + dribbling
        while len(replies) < len(socks) and time.monotonic() < deadline:
            if time.monotonic() < opened + HEAD_TIMEOUT - 1:
                for sock in dribbling:
                    sock.send(b"X")
            for sock in socks:
                if id(sock) not in replies and (reply := _read_until_closed(sock, received)) is not None:
                    replies[id(sock)] = reply
            time.sleep(0.25)
        closed_after = time.monotonic() - opened
        assert len(replies) == len(socks), f"{len(socks) - len(replies)} connections still held after {closed_after:.0f}s"
        assert closed_after >= HEAD_TIMEOUT - 0.5
    finally:
        for sock in silent + partial + dribbling:
            sock.close()

    for sock in silent:
        assert replies[id(sock)] == b""  # nothing asked, nothing answered
    for sock in partial + dribbling:
        reply = replies[id(sock)]
        assert reply.startswith(b"HTTP/1.1 408 "), reply[:200]
        assert b"x-request-id: req_" in reply and b'"code":"request_timeout"' in reply
    # Everything was let go of.
    time.sleep(0.5)
    assert _open_fds(guarded) <= baseline + 2
    with httpx.Client(base_url=guarded.base_url, timeout=30) as http:
        assert http.get("/health").status_code == 200


def test_a_kept_alive_connection_gets_the_same_bound_for_its_next_head(guarded):
    sock = _connect(guarded)
    sock.setblocking(True)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first = b""
    while b"\r\n\r\n" not in first:
        first += sock.recv(65536)
    head, _, body = first.partition(b"\r\n\r\n")
    length = int(next(v for k, v in (line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
                      if k.lower() == b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200") and len(body) == length
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    started = time.monotonic()
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 408"), reply
    assert HEAD_TIMEOUT - 0.5 <= time.monotonic() - started <= HEAD_TIMEOUT + 5


def test_a_head_larger_than_the_bound_is_refused(guarded):
    sock = _connect(guarded)
    sock.setblocking(True)
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    reply = b""
    try:
        for _ in range(200):  # 200 x 1 KiB of one header that never ends
            sock.sendall(b"X-Long: " + b"a" * 1016)
            time.sleep(0.001)
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        while chunk := sock.recv(65536):
            reply += chunk
    except ConnectionResetError:
        pass
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert Path("/proc/%d" % guarded.process.pid).exists()
