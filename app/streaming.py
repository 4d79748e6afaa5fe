"""OpenAI's transcript event stream, rendered from the engine's segments as they are decoded.

Each event is `data: <compact JSON>\\n\\n` (the last one too: the Python SDK drops a final event
without its blank line); no `event:` lines and no `[DONE]`, as OpenAI sends them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from app.errors import APIError
from app.render import logprobs_of, reported_languages, token_usage
from engines.base import Segment, TranscriptionInfo

log = logging.getLogger("earshot.streaming")


def _event(payload: dict) -> dict:
    return {"data": json.dumps(payload, separators=(",", ":"), ensure_ascii=False)}


def failure_body(exc: Exception, what: str) -> dict:
    """The error event for a failure after a stream started; call it from the `except` block."""
    if isinstance(exc, APIError):
        return exc.body()
    log.exception("%s failed mid-stream", what)
    return APIError("The server had an error while processing your request.", status=500).body()


async def transcript_events(
    info: TranscriptionInfo, segments: AsyncIterator[Segment], *, logprobs: bool, languages: bool = False
) -> AsyncIterator[dict]:
    """A delta per decoded segment, then `done` with the whole text, logprobs and usage."""
    text = ""
    all_logprobs: list[dict] = []
    output_tokens = 0
    try:
        async with aclosing(segments):
            async for segment in segments:
                delta = segment.text if text else segment.text.lstrip()
                output_tokens += len(segment.tokens)
                if not delta:
                    continue
                text += delta
                event = {"type": "transcript.text.delta", "delta": delta}
                if logprobs:
                    event["logprobs"] = logprobs_of([segment])
                    all_logprobs.extend(event["logprobs"])
                yield _event(event)
    except Exception as exc:  # the response has started: the error travels as an event
        yield _event(failure_body(exc, "transcription"))
        return
    done: dict = {"type": "transcript.text.done", "text": text}
    if languages:
        done["languages"] = reported_languages(info, text)
    if logprobs:
        done["logprobs"] = all_logprobs
    done["usage"] = token_usage(info, output_tokens)
    yield _event(done)


def event_response(
    events: AsyncIterator[dict], ping_seconds: float, on_close: Callable[[], None] | None = None
) -> EventSourceResponse:
    """`on_close` runs when the response ends however it ends, even if the client left before the
    first event and the event generator never started (so its own cleanup never ran)."""
    return EventSourceResponse(
        events,
        sep="\n",
        ping=ping_seconds,
        background=BackgroundTask(_on_loop(on_close)) if on_close else None,
        # Keep proxies (nginx, CDNs) from buffering the stream.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _on_loop(function: Callable[[], None]) -> Callable:
    # Starlette runs a plain function's background task in a worker thread; closing a job needs
    # the event loop (its admission slot is an asyncio semaphore).
    async def run() -> None:
        function()

    return run
