"""`GET /v1/realtime?intent=transcription`: the WebSocket of OpenAI's Realtime transcription sessions.

The route admits the socket (intent, the session limit; the API key is checked by
`app.auth.APIKeyMiddleware` before), then pumps client messages into a `RealtimeSession` and its
events out through one writer task, so events from the receive loop and the decoder never
interleave mid-frame.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from app.auth import refuse_upgrade
from app.errors import APIError
from app.realtime import events
from app.realtime.session import Limits, RealtimeSession

log = logging.getLogger("earshot.realtime")
router = APIRouter()
# What browsers offer (they cannot set headers on a WebSocket); the SDKs offer nothing.
SUBPROTOCOL = "realtime"


class SessionCount:
    """Open realtime sessions, against EARSHOT_REALTIME_MAX_SESSIONS."""

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self.open = 0

    def refusal(self) -> APIError | None:
        if self.open < self.limit:
            return None
        return APIError(
            f"This server is at its limit of {self.limit} realtime sessions (EARSHOT_REALTIME_MAX_SESSIONS). "
            "Please retry later.",
            status=429, type="requests", code="rate_limit_exceeded", headers={"retry-after": "5"},
        )  # fmt: skip


async def refuse(websocket: WebSocket, error: APIError) -> None:
    """Answer the upgrade request with an ordinary HTTP error, as an HTTP route would."""
    await refuse_upgrade(error, websocket.scope, websocket.receive, websocket.send)


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket) -> None:
    state = websocket.app.state
    settings = state.settings
    if websocket.query_params.get("intent") != "transcription":
        await refuse(websocket, APIError(
            "This server serves realtime transcription sessions only: connect to /v1/realtime?intent=transcription.",
            param="intent", code="invalid_value",
        ))  # fmt: skip
        return
    if not len(state.registry):
        await refuse(websocket, APIError("No speech model is configured on this server.", status=503))
        return
    count: SessionCount = state.realtime_sessions
    refusal = count.refusal()
    if refusal is not None:
        state.metrics.rejected.inc()
        await refuse(websocket, refusal)
        return
    count.open += 1
    try:
        await _serve(websocket, state, settings)
    finally:
        count.open -= 1


async def _serve(websocket: WebSocket, state, settings) -> None:
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    outbox: asyncio.Queue[dict | None] = asyncio.Queue()
    limits = Limits(
        max_buffer_seconds=min(settings.realtime_max_buffer_seconds, settings.max_audio_seconds),
        piece_seconds=settings.realtime_piece_seconds,
    )
    session = RealtimeSession(state.service, state.registry, limits, outbox.put_nowait)
    writer = asyncio.create_task(_write(websocket, outbox))
    outbox.put_nowait(session.created())
    idle = settings.realtime_idle_timeout if settings.realtime_idle_timeout > 0 else math.inf
    try:
        while not writer.done():
            try:
                message = await asyncio.wait_for(websocket.receive(), None if math.isinf(idle) else idle)
            except TimeoutError:
                outbox.put_nowait(events.error(
                    f"The session sent no event for {idle:g} seconds (EARSHOT_REALTIME_IDLE_TIMEOUT) and was closed.",
                    code="idle_timeout",
                ))  # fmt: skip
                outbox.put_nowait(None)
                await writer
                await websocket.close(code=1000, reason="idle timeout")
                return
            if message["type"] == "websocket.disconnect":
                return
            await session.receive(message.get("text") if message.get("text") is not None else message.get("bytes", b""))
    except WebSocketDisconnect:
        return
    finally:
        # A client that vanished frees its decoding (and admission slots) at once.
        await session.close()
        writer.cancel()


async def _write(websocket: WebSocket, outbox: asyncio.Queue) -> None:
    while (event := await outbox.get()) is not None:
        try:
            await websocket.send_text(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
