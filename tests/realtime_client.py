"""A raw realtime-socket client for the tests: every server event it receives is validated against
the official Python SDK's own union of server events (`openai.types.realtime.RealtimeServerEvent`),
so a shape the SDKs would not accept fails the test that received it."""

from __future__ import annotations

import base64
import io
import json
import time
import wave

import av
import numpy as np
from openai.types.realtime import RealtimeServerEvent
from pydantic import BaseModel, TypeAdapter
from scipy.signal import resample_poly
from websockets.sync.client import connect

SERVER_EVENT = TypeAdapter(RealtimeServerEvent)
# The transcription session's GA server events: anything else has no business on this socket.
TRANSCRIPTION_EVENTS = frozenset({
    "session.created", "session.updated", "error", "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped", "input_audio_buffer.committed", "input_audio_buffer.cleared",
    "conversation.item.added", "conversation.item.done", "conversation.item.input_audio_transcription.delta",
    "conversation.item.input_audio_transcription.completed", "conversation.item.input_audio_transcription.failed",
})  # fmt: skip


# What OpenAI's own server sends beyond the SDKs' types: the SDKs type the session of
# `session.created` / `session.updated` as the session *request*, without `object` (nor `id` and
# `expires_at`, which Earshot does not send).
UNTYPED = {".session.object", ".session.id", ".session.expires_at"}


def unknown_fields(value, path: str = "") -> list[str]:
    """Fields the SDK's models kept as extras (it accepts unknown fields silently), at any depth."""
    found = []
    if isinstance(value, BaseModel):
        found += [f"{path}.{key}" for key in value.model_extra or {}]
        for key in type(value).model_fields:
            found += unknown_fields(getattr(value, key), f"{path}.{key}")
    elif isinstance(value, list):
        for k, element in enumerate(value):
            found += unknown_fields(element, f"{path}[{k}]")
    return found


def checked(event: dict) -> dict:
    """The event, after checking it is a transcription session's and parses as the SDK's type with
    no field the SDK does not know."""
    assert event["type"] in TRANSCRIPTION_EVENTS, event
    parsed = SERVER_EVENT.validate_python(event)
    assert parsed.type == event["type"]
    assert set(unknown_fields(parsed)) <= UNTYPED, (event["type"], unknown_fields(parsed))
    assert event["event_id"].startswith("event_")
    return event


def ws_url(base_url: str, query: str = "intent=transcription") -> str:
    return base_url.replace("http://", "ws://") + "/v1/realtime" + (f"?{query}" if query else "")


class Socket:
    def __init__(self, base_url: str, query: str = "intent=transcription", **options) -> None:
        # Entered by hand: a test decides when (and whether) the socket closes.
        self.ws = connect(ws_url(base_url, query), max_size=None, **options).__enter__()
        self.created = self.next()
        assert self.created["type"] == "session.created"

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc) -> None:
        self.ws.close()

    def send(self, event: dict | str | bytes) -> None:
        self.ws.send(json.dumps(event) if isinstance(event, dict) else event)

    def next(self, timeout: float = 30) -> dict:
        return checked(json.loads(self.ws.recv(timeout=timeout)))

    def until(self, kind: str, timeout: float = 60) -> list[dict]:
        """Events up to and including the first of `kind`."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            event = self.next(max(deadline - time.monotonic(), 0.01))
            seen.append(event)
            if event["type"] == kind:
                return seen

    def update(self, **session) -> dict:
        self.send({"type": "session.update", "session": {"type": "transcription", **session}})
        answer = self.next()
        assert answer["type"] == "session.updated", answer
        return answer["session"]

    def append(self, data: bytes, chunk: int = 4800) -> None:
        for first in range(0, len(data), chunk):
            self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(data[first : first + chunk]).decode()})


def audio_input(fmt: str = "audio/pcm", model: str = "whisper-1", turn_detection: dict | None = None, **transcription) -> dict:
    format_ = {"type": fmt, "rate": 24000} if fmt == "audio/pcm" else {"type": fmt}
    return {"input": {"format": format_, "transcription": {"model": model, **transcription}, "turn_detection": turn_detection}}


SERVER_VAD = {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500}


def int16(samples: np.ndarray) -> np.ndarray:
    return (np.clip(samples, -1, 1) * 32767).astype("<i2")


def pcm24(samples16k: np.ndarray) -> bytes:
    """16 kHz float32 → the realtime API's `audio/pcm`: 24 kHz 16-bit little-endian."""
    return int16(resample_poly(samples16k, 3, 2)).tobytes()


def g711(samples16k: np.ndarray, law: str) -> bytes:
    """16 kHz float32 → 8 kHz G.711 bytes (`pcmu` or `pcma`)."""
    from app.realtime.audio_formats import encode_g711

    return encode_g711(int16(resample_poly(samples16k, 1, 2)), law)


def pcm_wav(pcm: bytes) -> bytes:
    """`audio/pcm` bytes (24 kHz 16-bit) in a WAV container."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(24000)
        w.writeframes(pcm)
    return out.getvalue()


def ffmpeg_wav(pcm: np.ndarray, rate: int, codec: str) -> bytes:
    """A mono WAV written by FFmpeg's own encoder for `codec` (PyAV) from 16-bit samples."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="wav") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return buf.getvalue()


def items(events: list[dict]) -> dict[str, list[dict]]:
    """Events that name an item, grouped by item id, in arrival order."""
    grouped: dict[str, list[dict]] = {}
    for event in events:
        item_id = event.get("item_id") or (event.get("item") or {}).get("id")
        if item_id:
            grouped.setdefault(item_id, []).append(event)
    return grouped
