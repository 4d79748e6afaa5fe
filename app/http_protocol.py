"""uvicorn's HTTP protocol, with the answers uvicorn writes itself made like every other one, and
a bound on how long and how large a request head may be.

uvicorn answers malformed HTTP (bad header bytes, broken chunk framing, a bad Content-Length)
before the app sees anything, with a plain-text 400 and no request id; SDKs and proxies then get
a body that is not the `{"error": {...}}` shape every other answer has. And it waits for a request
head forever: a connection that sends nothing, or headers that never end, is held until the
client lets go, so a few thousand idle sockets would use up the server's file descriptors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app import logs
from app.request_ids import log_access, new_id

log = logging.getLogger("earshot.http")

# Node's and nginx's default limits are 16 KiB and 8 KiB x 4; OpenAI's requests carry a few
# hundred bytes of headers.
MAX_HEAD_BYTES = 64 * 1024

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def envelope(message: str, code: str = "malformed_request") -> bytes:
    return json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}},
        separators=(",", ":"),
    ).encode()


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    """`head_timeout`: seconds from connecting (on a kept-alive connection: from the next
    request's first byte) to the end of the request's headers; 0 = no limit. Set per server by
    `with_head_timeout`."""

    head_timeout: float = 0.0

    @classmethod
    def with_head_timeout(cls, seconds: float) -> type[EnvelopeHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"head_timeout": seconds})

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = True  # waiting for (the rest of) a request head
        self._head_begun = False  # a byte of it has arrived
        self._head_bytes = 0
        self._begun_in_chunk = False
        self._head_since = time.monotonic()
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._begun_in_chunk = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._refuse(400, f"Malformed HTTP request: {exc}", "malformed_request")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # The parser buffers an unfinished head; bound it. A read that began a head may also hold
        # the end of the previous request, so it is not counted (one read is at most 256 KiB).
        if self._in_head and not self._begun_in_chunk:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(431, f"Request headers are larger than {MAX_HEAD_BYTES} bytes.", "headers_too_large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # the next request on a kept-alive connection
            self._in_head = True
            self._head_bytes = 0
            self._head_since = time.monotonic()
        self._head_begun = self._begun_in_chunk = True
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._in_head = self._head_begun = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, f"Malformed HTTP request: {msg}", "malformed_request")

    def _arm_head_timer(self) -> None:
        if self.head_timeout > 0 and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a pipelined head behind a running request: that answer is still being written
        if not self._head_begun:
            log.info("closed a connection that sent no request within %gs", self.head_timeout)
            self.transport.close()
            return
        self._refuse(408, f"The request headers did not arrive within {self.head_timeout:g} seconds.",
                     "request_timeout")

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer with the envelope and close: the connection's framing can no longer be trusted."""
        self._disarm_head_timer()
        self._in_head = False
        rid = new_id()
        body = envelope(message, code)
        head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(
            b"content-type: application/json\r\ncontent-length: %d\r\nx-request-id: %s\r\nconnection: close\r\n\r\n"
            % (len(body), rid.encode())
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        token = logs.request_id.set(rid)
        try:
            log.warning(message)
            log_access("-", getattr(self, "url", b"").decode("latin-1", "replace")[:200] or "-", status, self._head_since)
        finally:
            logs.request_id.reset(token)
