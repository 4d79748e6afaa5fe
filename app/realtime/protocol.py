"""Client events of OpenAI's Realtime API that a transcription session takes, and the session's
configuration, in the GA shape of the SDKs' `openai.types.realtime` (fields in their order).

A bad event never closes the socket: `ClientEventError` becomes an `error` event naming the
event's id and the offending parameter by its dotted path (`session.audio.input.format.type`).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.protocol import MAX_KEYWORDS, Keyword, Language, LanguageCode, _describe
from engines.registry import ModelEntry, Registry

# OpenAI's limit on one append's audio.
MAX_APPEND_BYTES = 15 * 1024 * 1024
LOGPROBS = "item.input_audio_transcription.logprobs"
# Events of the conversation side of the Realtime API: meaningful only in a speech-to-speech session.
CONVERSATION_EVENTS = frozenset({
    "conversation.item.create", "conversation.item.delete", "conversation.item.retrieve",
    "conversation.item.truncate", "response.create", "response.cancel", "output_audio_buffer.clear",
})  # fmt: skip
CLIENT_EVENTS = ("session.update", "input_audio_buffer.append", "input_audio_buffer.commit", "input_audio_buffer.clear")


class ClientEventError(Exception):
    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None,
                 event_id: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.event_id = event_id


class _Strict(BaseModel):
    # OpenAI answers unknown parameters with `unknown_parameter`; so does Earshot.
    model_config = ConfigDict(extra="forbid")


class AudioFormat(_Strict):
    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"] = "audio/pcm"
    rate: Literal[24000] | None = None

    def shown(self) -> dict:
        return {"type": self.type, "rate": 24000} if self.type == "audio/pcm" else {"type": self.type}


class NoiseReduction(_Strict):
    type: Literal["near_field", "far_field"] | None = None
    strength: float | None = Field(None, ge=0, le=1)


class Transcription(_Strict):
    delay: Literal["minimal", "low", "medium", "high", "xhigh"] | None = None
    keywords: list[Keyword] | None = Field(None, max_length=MAX_KEYWORDS)
    language: Language = None
    languages: list[LanguageCode] | None = None
    model: str | None = None
    prompt: str | None = None


class ServerVad(_Strict):
    type: Literal["server_vad"]
    # Accepted for compatibility; a transcription session creates no responses.
    create_response: bool | None = None
    idle_timeout_ms: int | None = Field(None, ge=0)
    interrupt_response: bool | None = None
    prefix_padding_ms: int = Field(300, ge=0, le=10_000)
    silence_duration_ms: int = Field(500, ge=0, le=10_000)
    threshold: float = Field(0.5, ge=0, le=1)


class AudioInput(_Strict):
    format: AudioFormat | None = None
    noise_reduction: NoiseReduction | None = None
    transcription: Transcription | None = None
    turn_detection: ServerVad | None = None


class Audio(_Strict):
    input: AudioInput | None = None


class SessionUpdate(_Strict):
    type: Literal["transcription"]
    audio: Audio | None = None
    include: list[Literal["item.input_audio_transcription.logprobs"]] | None = None


class SessionConfig(BaseModel):
    """A session's settings as they stand; `apply` takes a validated `session.update`."""

    format: AudioFormat = AudioFormat()
    noise_reduction: NoiseReduction | None = None
    transcription: Transcription = Transcription()
    turn_detection: ServerVad | None = ServerVad(type="server_vad")
    include: list[str] = []

    def apply(self, update: SessionUpdate, fields: dict) -> SessionConfig:
        """A new config: every object the update names replaces the old one (null switches it off).
        Whether the registry's model allows it is `entry`'s check."""
        changed = self.model_copy()
        # Validated already: `audio` and `audio.input` are objects or null.
        given = (fields.get("audio") or {}).get("input") or {}
        audio_input = update.audio.input if update.audio and update.audio.input else AudioInput()
        if "format" in given:
            changed.format = audio_input.format or AudioFormat()
        if "noise_reduction" in given:
            changed.noise_reduction = audio_input.noise_reduction
        if "transcription" in given:
            changed.transcription = audio_input.transcription or Transcription()
        if "turn_detection" in given:
            changed.turn_detection = audio_input.turn_detection
        if "include" in fields:
            changed.include = list(update.include or [])
        return changed

    def entry(self, registry: Registry) -> ModelEntry:
        name = self.transcription.model or default_model(registry)
        entry = registry.get(name) if name else None
        param = "session.audio.input.transcription.model"
        if entry is None:
            raise ClientEventError(f"Invalid value: '{name}'. The model does not exist on this server.", param=param)
        rules = entry.rules
        if self.include and not rules.logprobs:
            raise ClientEventError(
                f"{LOGPROBS} is not supported with model '{name}'.", param="session.include", code="unsupported_value"
            )
        for field in ("keywords", "languages"):
            if getattr(self.transcription, field) and not getattr(rules, field):
                raise ClientEventError(
                    f"{field} is not supported with model '{name}'. Use 'gpt-transcribe' instead.",
                    param=f"session.audio.input.transcription.{field}", code="unsupported_value",
                )  # fmt: skip
        language, allowed = self.transcription.language, self.transcription.languages or []
        if language is not None and allowed and language not in allowed:
            raise ClientEventError(
                f"language '{language}' is not one of languages {allowed}.",
                param="session.audio.input.transcription.language",
            )
        return entry

    @property
    def logprobs(self) -> bool:
        return LOGPROBS in self.include

    def shown(self, registry: Registry) -> dict:
        """The session object of `session.created` / `session.updated`."""
        transcription = self.transcription.model_dump(exclude_none=True)
        transcription.setdefault("model", default_model(registry))
        transcription.setdefault("language", None)
        transcription.setdefault("prompt", "")
        return {
            "type": "transcription",
            "object": "realtime.transcription_session",
            "audio": {
                "input": {
                    "format": self.format.shown(),
                    "noise_reduction": self.noise_reduction.model_dump(exclude_none=True) if self.noise_reduction else None,
                    "transcription": transcription,
                    "turn_detection": self.turn_detection.model_dump(exclude_none=True) if self.turn_detection else None,
                }
            },
            "include": self.include or None,
        }


def default_model(registry: Registry) -> str | None:
    if registry.get("whisper-1") is not None:
        return "whisper-1"
    return next((entry.id for entry in registry), None)



def _validation_error(exc: ValidationError, prefix: str, event_id: str | None) -> ClientEventError:
    err = exc.errors()[0]
    # The session models hold no unions with tags, so a location is field names (and list indexes).
    param = ".".join([prefix, *(str(p) for p in err["loc"])])
    if err["type"] == "extra_forbidden":
        return ClientEventError(f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param, event_id=event_id)
    message, code = _describe({**err, "loc": (param,)})
    return ClientEventError(message, code=code, param=param, event_id=event_id)


def parse_event(raw: str | bytes) -> dict:
    """A client event as a dict with a known `type`, or ClientEventError."""
    if isinstance(raw, bytes):
        raise ClientEventError(
            "Binary frames are not supported: send each client event as a JSON text frame "
            "(audio goes base64-encoded in input_audio_buffer.append).",
            code="invalid_json",
        )
    try:
        event = json.loads(raw)
    except (ValueError, RecursionError):
        raise ClientEventError(
            "The server could not parse the event: it is not valid JSON.", code="invalid_json"
        ) from None
    if not isinstance(event, dict):
        raise ClientEventError("A client event must be a JSON object.", code="invalid_json")
    event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
    kind = event.get("type")
    if kind is None:
        raise ClientEventError("Missing required parameter: 'type'.", code="missing_required_parameter",
                               param="type", event_id=event_id)  # fmt: skip
    if kind in CONVERSATION_EVENTS:
        raise ClientEventError(
            f"'{kind}' is not supported in a transcription session (intent=transcription): this server "
            "transcribes input audio and creates no responses.",
            code="unsupported_value", param="type", event_id=event_id,
        )  # fmt: skip
    if kind == "transcription_session.update":
        raise ClientEventError(
            "'transcription_session.update' is the beta Realtime API; send 'session.update' with "
            "session.type = 'transcription'.",
            code="unsupported_value", param="type", event_id=event_id,
        )  # fmt: skip
    if kind not in CLIENT_EVENTS:
        supported = ", ".join(f"'{name}'" for name in CLIENT_EVENTS)
        shown = json.dumps(kind)[:60]
        raise ClientEventError(f"Invalid value: {shown}. Supported values are: {supported}.", param="type", event_id=event_id)
    return event


def _required(event: dict, name: str, kind: type, described: str):
    value = event.get(name)
    if isinstance(value, kind):
        return value
    missing = value is None
    raise ClientEventError(
        f"Missing required parameter: '{name}'." if missing else f"Invalid type for '{name}': expected {described}.",
        code="missing_required_parameter" if missing else "invalid_type", param=name, event_id=event.get("event_id"),
    )  # fmt: skip


def session_update(event: dict) -> tuple[SessionUpdate, dict]:
    event_id = event.get("event_id")
    fields = _required(event, "session", dict, "an object")
    if fields.get("type") == "realtime":
        raise ClientEventError(
            "This server serves transcription sessions only: set session.type to 'transcription' "
            "(and connect with intent=transcription).",
            code="unsupported_value", param="session.type", event_id=event_id,
        )  # fmt: skip
    try:
        return SessionUpdate.model_validate(fields), fields
    except ValidationError as exc:
        raise _validation_error(exc, "session", event_id) from None


def append_audio(event: dict) -> bytes:
    event_id = event.get("event_id")
    audio = _required(event, "audio", str, "a base64 string")
    try:
        payload = base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise ClientEventError("Invalid 'audio': not valid base64.", param="audio", event_id=event_id) from None
    if len(payload) > MAX_APPEND_BYTES:
        raise ClientEventError(
            f"Invalid 'audio': {len(payload)} bytes in one append; the maximum is {MAX_APPEND_BYTES}.",
            param="audio", event_id=event_id,
        )  # fmt: skip
    return payload

