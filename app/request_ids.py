"""`x-request-id` on every answer, like OpenAI's (`req_<hex>`), and the same id on every log line
of the request, including the access line written when it ends.

The middleware sits outside everything else in the app (FastAPI's own error middleware
included), so 500s carry the id too; answers uvicorn writes itself (unparseable HTTP, a request
head that never finishes) take theirs from `new_id` in app/http_protocol.py.
"""

from __future__ import annotations

import logging
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import logs
from app.errors import APIError

access = logging.getLogger("earshot.access")
log = logging.getLogger("earshot")


def new_id() -> str:
    return "req_" + secrets.token_hex(16)


def log_access(method: str, path: str, status: int, started: float, **extra) -> None:
    access.info(
        "%s %s %s", method, path, status,
        extra={"method": method, "path": path, "status": status,
               "duration_ms": round((time.monotonic() - started) * 1000, 1), **extra},
    )


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_id()
        token = logs.request_id.set(rid)
        started = time.monotonic()
        status = None
        complete = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            # Starlette's error middleware has logged it and sent the 500 envelope, then re-raised
            # for servers that want to know. uvicorn would log the same traceback again and close
            # a keep-alive connection that has a whole answer on it.
            if complete:
                return
            if status is None:
                log.exception("unhandled error on %s %s", scope["method"], scope["path"])
                status = 500
                await APIError("The server had an error while processing your request.", status=500).response()(
                    scope, receive, send_with_id
                )
                return
            raise  # a body cut short: only closing the connection tells the client
        finally:
            log_access(scope["method"], scope["path"], status or 500, started)
            logs.request_id.reset(token)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The id goes on the upgrade's answer (accepted or refused) and on the session's log lines;
        the access line is written when the socket closes."""
        rid = new_id()
        token = logs.request_id.set(rid)
        started = time.monotonic()
        status = None

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] in ("websocket.accept", "websocket.http.response.start"):
                status = 101 if message["type"] == "websocket.accept" else message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            elif message["type"] == "websocket.close" and status is None:
                status = 403  # refused before the upgrade: the server answers 403
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log_access("GET", scope["path"], status or 500, started, websocket=True)
            logs.request_id.reset(token)
