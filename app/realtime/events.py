"""Server events of a realtime transcription session, shaped as the SDKs' `openai.types.realtime`."""

from __future__ import annotations

import secrets

from app.realtime.protocol import ClientEventError
from engines.base import SAMPLE_RATE


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


def _event(kind: str, **fields) -> dict:
    return {"type": kind, "event_id": new_id("event"), **fields}


def ms(samples: int) -> int:
    return int(samples * 1000 // SAMPLE_RATE)


def session_created(session: dict) -> dict:
    return _event("session.created", session=session)


def session_updated(session: dict) -> dict:
    return _event("session.updated", session=session)


def error(message: str, *, type: str = "invalid_request_error", code: str | None = None,
          param: str | None = None, event_id: str | None = None) -> dict:  # fmt: skip
    return _event("error", error={"type": type, "code": code, "message": message, "param": param, "event_id": event_id})


def client_error(exc: ClientEventError) -> dict:
    return error(exc.message, code=exc.code, param=exc.param, event_id=exc.event_id)


def speech_started(item_id: str, start: int) -> dict:
    return _event("input_audio_buffer.speech_started", audio_start_ms=ms(start), item_id=item_id)


def speech_stopped(item_id: str, end: int) -> dict:
    return _event("input_audio_buffer.speech_stopped", audio_end_ms=ms(end), item_id=item_id)


def committed(item_id: str, previous_item_id: str | None) -> dict:
    return _event("input_audio_buffer.committed", item_id=item_id, previous_item_id=previous_item_id)


def cleared() -> dict:
    return _event("input_audio_buffer.cleared")


def _user_audio_item(item_id: str) -> dict:
    # The transcript arrives in its own events; the item holds no audio (Earshot keeps none).
    return {
        "id": item_id,
        "type": "message",
        "object": "realtime.item",
        "status": "completed",
        "role": "user",
        "content": [{"type": "input_audio", "transcript": None}],
    }


def item_added(item_id: str, previous_item_id: str | None) -> dict:
    return _event("conversation.item.added", item=_user_audio_item(item_id), previous_item_id=previous_item_id)


def item_done(item_id: str, previous_item_id: str | None) -> dict:
    return _event("conversation.item.done", item=_user_audio_item(item_id), previous_item_id=previous_item_id)


def transcription_delta(item_id: str, delta: str, logprobs: list[dict] | None) -> dict:
    fields = {"item_id": item_id, "content_index": 0, "delta": delta}
    if logprobs is not None:
        fields["logprobs"] = logprobs
    return _event("conversation.item.input_audio_transcription.delta", **fields)


def transcription_completed(
    item_id: str, transcript: str, usage: dict, logprobs: list[dict] | None, languages: list[dict] | None
) -> dict:
    fields = {"item_id": item_id, "content_index": 0, "transcript": transcript, "usage": usage}
    if languages is not None:
        fields["languages"] = languages
    if logprobs is not None:
        fields["logprobs"] = logprobs
    return _event("conversation.item.input_audio_transcription.completed", **fields)


def transcription_failed(item_id: str, body: dict) -> dict:
    """`body` is an error envelope (`APIError.body()`)."""
    return _event("conversation.item.input_audio_transcription.failed", item_id=item_id, content_index=0,
                  error=body["error"])  # fmt: skip
