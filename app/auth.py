"""Bearer-key authentication for /v1/*, answered the way OpenAI answers it.

`/health` and `/metrics` stay open so probes and scrapers need no secret.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import APIError

SUBPROTOCOL_KEY_PREFIX = "openai-insecure-api-key."
MISSING = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using "
    "Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


def mask(key: str) -> str:
    """OpenAI shows the first three and last four characters of a wrong key."""
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}"


def key_matches(candidate: str, keys: list[str]) -> bool:
    # Compare against every key, in constant time each, so timing reveals neither key nor position.
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate.encode(), key.encode())
    return found


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or not self.keys or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1").strip()
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scope["type"] == "websocket" and not header:
            # Browsers cannot set headers on a WebSocket: OpenAI takes the key as a subprotocol.
            offered = [p for p in scope.get("subprotocols", []) if p.startswith(SUBPROTOCOL_KEY_PREFIX)]
            if offered:
                scheme, token = "bearer", offered[0][len(SUBPROTOCOL_KEY_PREFIX) :]
        if scheme.lower() != "bearer" or not token:
            error = APIError(MISSING, status=401, type="invalid_request_error")
        elif not key_matches(token, self.keys):
            error = APIError(
                f"Incorrect API key provided: {mask(token)}. You can find your API key in this server's "
                "EARSHOT_API_KEYS configuration.",
                status=401,
                type="invalid_request_error",
                code="invalid_api_key",
            )
        else:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await refuse_upgrade(error, scope, receive, send)
            return
        await error.response()(scope, receive, send)


async def refuse_upgrade(error: APIError, scope: Scope, receive: Receive, send: Send) -> None:
    """An HTTP error as the answer to a WebSocket upgrade (where the server can send one)."""
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        # Starlette's responses send `websocket.http.response.*` messages in a websocket scope.
        await error.response()(scope, receive, send)
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": error.message[:120]})
