"""One realtime transcription session: client events in, server events out.

Audio flows one way: base64 appends → `InputAudio` (16 kHz) → turns (server VAD, `TurnDetector`)
or the client's commit → items → the serving layer's jobs on the shared engine → transcription
events. Each item is decoded in pieces as its audio arrives (a long turn in several), one item
after another, so a session's events keep their order while other sessions and HTTP requests
decode beside it under the same admission.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from starlette.concurrency import run_in_threadpool

from app.errors import APIError
from app.protocol import hotwords
from app.realtime import events
from app.realtime.audio_formats import InputAudio
from app.realtime.protocol import ClientEventError, SessionConfig, append_audio, parse_event, session_update
from app.render import logprobs_of, reported_languages, usage
from app.serving import Job, TranscriptionService, samples
from engines.base import SAMPLE_RATE, TranscribeOptions, TranscriptionInfo
from engines.registry import ModelEntry, Registry
from engines.turns import Piece, SpeechStarted, SpeechStopped, TurnDetector, TurnSettings

log = logging.getLogger("earshot.realtime")

# OpenAI refuses to commit less than this.
MIN_COMMIT_SAMPLES = SAMPLE_RATE // 10


@dataclass(frozen=True)
class Limits:
    max_buffer_seconds: float = 300.0
    piece_seconds: float = 10.0

    @property
    def max_buffer_samples(self) -> int:
        return int(self.max_buffer_seconds * SAMPLE_RATE)


@dataclass
class _Item:
    """A user audio item being transcribed: its pieces arrive as the turn goes on."""

    id: str
    pieces: asyncio.Queue = field(default_factory=asyncio.Queue)


class _Discarded:
    """Put in an item's queue when its audio was cleared before the turn ended."""


class RealtimeSession:
    def __init__(
        self, service: TranscriptionService, registry: Registry, limits: Limits, emit: Callable[[dict], None]
    ) -> None:
        self._service = service
        self._registry = registry
        self._limits = limits
        self._emit = emit
        self.config = SessionConfig()
        self._entry: ModelEntry = self.config.entry(registry)
        self._audio = InputAudio(self.config.format.type)
        self._turns: TurnDetector | None = self._detector()
        # Without turn detection: the uncommitted audio, until the client commits or clears it.
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._open: _Item | None = None  # the item of the turn being spoken
        self._previous_item_id: str | None = None
        # Committed or speaking items, decoded in order by one task; undecoded audio is bounded.
        self._items: asyncio.Queue[_Item] = asyncio.Queue()
        self._pending = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._decoder = asyncio.create_task(self._decode_items())

    def created(self) -> dict:
        return events.session_created(self.config.shown(self._registry))

    async def receive(self, raw: str | bytes) -> None:
        """Handle one client message; a bad one is answered with an `error` event."""
        try:
            event = parse_event(raw)
            kind = event["type"]
            if kind == "input_audio_buffer.append":
                await self._append(append_audio(event), event.get("event_id"))
            elif kind == "input_audio_buffer.commit":
                self._commit(event.get("event_id"))
            elif kind == "input_audio_buffer.clear":
                self._clear()
                self._emit(events.cleared())
            else:
                self._update(event)
        except ClientEventError as exc:
            self._emit(events.client_error(exc))

    async def close(self) -> None:
        """The socket is gone: stop decoding at once."""
        self._decoder.cancel()
        try:
            await self._decoder
        except asyncio.CancelledError:
            pass

    # --- client events ------------------------------------------------------------------------

    def _update(self, event: dict) -> None:
        update, fields = session_update(event)
        try:
            config = self.config.apply(update, fields)
            entry = config.entry(self._registry)  # the model must exist and allow what was asked of it
        except ClientEventError as exc:
            exc.event_id = event.get("event_id")
            raise
        previous, self.config, self._entry = self.config, config, entry
        if config.format != previous.format or config.turn_detection != previous.turn_detection:
            # Audio appended under the old settings does not continue a turn under the new ones.
            self._clear()
            self._audio = InputAudio(config.format.type)
            self._turns = self._detector()
        self._emit(events.session_updated(config.shown(self._registry)))

    async def _append(self, payload: bytes, event_id: str | None) -> None:
        # Turns waiting for the engine hold their audio; past the limit the socket is not read
        # until they drain, so a client that sends faster than the engine decodes is slowed down.
        while self._pending > self._limits.max_buffer_samples:
            self._drained.clear()
            await self._drained.wait()
        if self._turns is None:
            room = self._limits.max_buffer_samples - self._buffered
            if len(payload) / self._audio.bytes_per_second * SAMPLE_RATE > room:
                raise ClientEventError(
                    f"The input audio buffer is full ({self._limits.max_buffer_seconds:g} seconds, "
                    "EARSHOT_REALTIME_MAX_BUFFER_SECONDS): commit or clear it before appending more.",
                    code="input_audio_buffer_full", param="audio", event_id=event_id,
                )  # fmt: skip
            decoded = self._audio.decode(payload)
            self._buffer.append(decoded)
            self._buffered += len(decoded)
            return
        # Scoring speech runs the VAD model: off the event loop, which serves every session. The
        # next client event waits for it, so the detector is never used from two threads.
        turns, audio = self._turns, self._audio
        self._on_turns(await run_in_threadpool(lambda: turns.feed(audio.decode(payload))))

    def _commit(self, event_id: str | None) -> None:
        if self._turns is not None:
            found = self._turns.end_turn()
            if not found:
                raise _commit_empty(0, event_id)
            self._on_turns(found)
            return
        tail = self._audio.flush()
        audio = np.concatenate([*self._buffer, tail]) if self._buffer or len(tail) else np.zeros(0, np.float32)
        self._buffer, self._buffered = [], 0
        if len(audio) < MIN_COMMIT_SAMPLES:
            raise _commit_empty(len(audio), event_id)
        item = self._start_item()
        self._committed(item)
        self._queue_piece(item, Piece(audio=audio, start=0, end=len(audio), final=True))

    def _clear(self) -> None:
        if self._turns is not None:
            self._turns.clear()
        self._audio.flush()
        self._buffer, self._buffered = [], 0
        if self._open is not None:
            self._open.pieces.put_nowait(_Discarded())
            self._open = None

    # --- turns --------------------------------------------------------------------------------

    def _detector(self) -> TurnDetector | None:
        vad = self.config.turn_detection
        if vad is None:
            return None
        return TurnDetector(
            TurnSettings(
                threshold=vad.threshold,
                prefix_padding_ms=vad.prefix_padding_ms,
                silence_duration_ms=vad.silence_duration_ms,
                piece_seconds=self._limits.piece_seconds,
            )
        )

    def _on_turns(self, found: list) -> None:
        for event in found:
            if isinstance(event, SpeechStarted):
                self._open = self._start_item()
                self._emit(events.speech_started(self._open.id, event.start))
            elif isinstance(event, SpeechStopped) and self._open is not None:
                self._emit(events.speech_stopped(self._open.id, event.end))
                self._committed(self._open)
            elif isinstance(event, Piece) and self._open is not None:
                self._queue_piece(self._open, event)
                if event.final:
                    self._open = None

    def _start_item(self) -> _Item:
        item = _Item(events.new_id("item"))
        self._items.put_nowait(item)
        return item

    def _committed(self, item: _Item) -> None:
        previous, self._previous_item_id = self._previous_item_id, item.id
        self._emit(events.committed(item.id, previous))
        self._emit(events.item_added(item.id, previous))
        self._emit(events.item_done(item.id, previous))

    def _queue_piece(self, item: _Item, piece: Piece) -> None:
        self._pending += len(piece.audio)
        item.pieces.put_nowait(piece)

    # --- decoding -----------------------------------------------------------------------------

    async def _decode_items(self) -> None:
        while True:
            item = await self._items.get()
            try:
                await self._transcribe(item)
            except Exception:  # one item's fault must not stop the items after it
                log.exception("realtime item %s failed", item.id)

    async def _transcribe(self, item: _Item) -> None:
        entry, config = self._entry, self.config
        transcription = config.transcription
        allowed = tuple(dict.fromkeys(transcription.languages or []))
        text, logprobs, failed = "", [], False
        total = TranscriptionInfo(language=transcription.language or "", language_probability=0.0,
                                  duration=0.0, audio_tokens=0, prompt_tokens=0)  # fmt: skip
        output_tokens = 0
        while True:
            piece = await item.pieces.get()
            if isinstance(piece, _Discarded):
                return
            self._pending -= len(piece.audio)
            if self._pending <= self._limits.max_buffer_samples:
                self._drained.set()
            if not failed:
                options = TranscribeOptions(
                    task="transcribe",
                    # A turn's later pieces keep the language its first piece was heard in.
                    language=transcription.language or (allowed[0] if len(allowed) == 1 else None) or total.language or None,
                    languages=allowed,
                    prompt=transcription.prompt or None,
                    hotwords=hotwords(transcription.keywords or []),
                    token_logprobs=config.logprobs,
                    streaming=True,
                )
                try:
                    running = await self._service.start(Job(entry, options, samples(piece.audio)))
                    try:
                        async for segment in running.segments():
                            output_tokens += len(segment.tokens)
                            delta = segment.text if text else segment.text.lstrip()
                            if text and delta and not delta[0].isspace() and not text[-1].isspace():
                                delta = " " + delta
                            if not delta:
                                continue
                            text += delta
                            pieces = logprobs_of([segment]) if config.logprobs else None
                            if pieces:
                                logprobs.extend(pieces)
                            self._emit(events.transcription_delta(item.id, delta, pieces))
                    finally:
                        running.close()
                    _add(total, running.info)
                except APIError as exc:
                    failed = True
                    self._emit(events.transcription_failed(item.id, exc.body()))
                except Exception:
                    failed = True
                    log.exception("realtime transcription failed")
                    body = APIError("The server had an error while processing your audio.", status=500).body()
                    self._emit(events.transcription_failed(item.id, body))
            if piece.final:
                break
        if failed:
            return
        languages = reported_languages(total, text) if entry.rules.languages else None
        self._emit(events.transcription_completed(
            item.id, text, usage(entry, total, output_tokens), logprobs if config.logprobs else None, languages
        ))  # fmt: skip


def _add(total: TranscriptionInfo, info: TranscriptionInfo) -> None:
    if not total.language:
        total.language, total.language_probability = info.language, info.language_probability
    total.duration += info.duration
    total.audio_tokens += info.audio_tokens
    total.prompt_tokens += info.prompt_tokens


def _commit_empty(buffered: int, event_id: str | None) -> ClientEventError:
    return ClientEventError(
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer "
        f"only has {buffered * 1000 / SAMPLE_RATE:.2f}ms of audio.",
        code="input_audio_buffer_commit_empty", event_id=event_id,
    )  # fmt: skip
