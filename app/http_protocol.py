"""uvicorn's HTTP protocol, except that requests it cannot even parse get OpenAI's error envelope.

uvicorn answers malformed HTTP (bad header bytes, broken chunk framing, a bad Content-Length)
itself, before the app sees anything, with a plain-text 400; SDKs and proxies then get a body
that is not the `{"error": {...}}` shape every other answer has.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def envelope(message: str) -> bytes:
    return json.dumps(
        {"error": {"message": f"Malformed HTTP request: {message}", "type": "invalid_request_error",
                   "param": None, "code": "malformed_request"}},
        separators=(",", ":"),
    ).encode()


class EnvelopeHttpToolsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        body = envelope(msg)
        head = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()
