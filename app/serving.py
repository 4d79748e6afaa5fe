"""The work behind every transport: a job (validated options + an audio source) in, the engine's
output out as domain events (`TranscriptionInfo`, then `Segment`s in time order).

HTTP routes and the realtime socket both hand `TranscriptionService.start` a `Job` and get a
`RunningJob` back; they differ only in how they render it (app/responses.py for HTTP,
app/realtime/ for the socket). Admission, audio decoding, the engines, the request timeout,
metrics and cancellation live here, once.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from app import audio as audio_io
from app import diarizing
from app.admission import Admission, Slot
from app.errors import APIError
from app.metrics import Metrics
from engines.base import SAMPLE_RATE, Segment, TranscribeOptions, TranscriptionInfo
from engines.manager import ModelManager
from engines.registry import ModelEntry
from engines.store import ModelNotFound

log = logging.getLogger("earshot.serving")

# Blocking, run in a worker thread: the audio as 16 kHz mono float32. The event is set when the
# job's client went away, so a long decode can stop early.
AudioSource = Callable[[threading.Event], np.ndarray]


@dataclass(frozen=True)
class Speakers:
    """A job's diarization: who spoke when, and the known speakers to name."""

    # (name, data URL) pairs; their audio is decoded and checked when the job starts.
    known: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Job:
    """What to transcribe and how, validated by whichever transport received it."""

    entry: ModelEntry
    options: TranscribeOptions
    audio: AudioSource
    speakers: Speakers | None = None
    # Checks a transport makes once the audio is known (e.g. its length); they raise APIError.
    check_audio: Callable[[np.ndarray], None] | None = None


def samples(audio: np.ndarray) -> AudioSource:
    """An audio source for samples already in memory."""
    return lambda _cancel: audio


@dataclass
class _End:
    pass


class RunningJob:
    """A started job: `info` is known, `segments` come as the engine decodes them.

    Whoever holds it calls `close()` when done (also early): that frees the admission slot and
    stops the decoding and diarization workers.
    """

    def __init__(self, service: TranscriptionService, job: Job, slot: Slot, started: float, deadline: float | None):
        self._service = service
        self.job = job
        self._slot = slot
        self._started = started
        self._deadline = deadline
        self._diarization: diarizing.DiarizationJob | None = None
        self._stream: AsyncIterator | None = None
        self._stop: threading.Event | None = None
        self.info: TranscriptionInfo | None = None

    @property
    def task(self) -> str:
        return self.job.options.task

    async def segments(self) -> AsyncIterator[Segment]:
        """The decoded segments; timed into the metrics when they run out."""
        service, model = self._service, self.job.entry.id
        loop = asyncio.get_running_loop()
        first = True
        async for segment in self._stream:
            if first and self.job.options.streaming:
                service.metrics.first_delta.labels(model).observe(loop.time() - self._started)
                first = False
            yield segment
        service.observe_done(model, self.info, loop.time() - self._started)

    async def collect(self) -> list[Segment]:
        return [segment async for segment in self.segments()]

    async def speaker_map(self) -> diarizing.SpeakerMap:
        job = self._diarization
        if job is None:
            raise RuntimeError("speaker_map() of a job without diarization")
        remaining = None if self._deadline is None else max(self._deadline - asyncio.get_running_loop().time(), 0)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), remaining)
        except TimeoutError:
            job.cancel()
            raise self._service.timeout() from None
        except ModelNotFound as exc:
            # The server's diarization model is missing: the client's request was fine.
            raise APIError(
                f"Speaker diarization is unavailable: {exc}", status=500, code="diarization_model_not_found",
                headers={"x-should-retry": "false"},
            ) from None  # fmt: skip

    def close(self) -> None:
        """Idempotent; safe to call from a response's background task."""
        self._slot.release()
        if self._diarization is not None:
            self._diarization.cancel()
        if self._stop is not None:
            # The decoding worker stops before its next segment.
            self._stop.set()


class TranscriptionService:
    def __init__(
        self,
        manager: ModelManager,
        *,
        admission: Admission | None = None,
        metrics: Metrics | None = None,
        max_audio_seconds: float | None = None,
        request_timeout: float = 0,
    ) -> None:
        self.manager = manager
        self.admission = admission or Admission(slots=8, max_queue=64)
        self.metrics = metrics or Metrics()
        self.metrics.queue_depth.set_function(lambda: self.admission.waiting)
        self.metrics.in_flight.set_function(lambda: self.admission.running)
        self.metrics.models_loaded.set_function(lambda: len(manager.loaded()))
        self.max_audio_seconds = max_audio_seconds
        self.request_timeout = request_timeout

    async def start(self, job: Job) -> RunningJob:
        """Admit the job, get its audio, start the engines and wait for the info.

        Anything that fails in here (queue full, bad audio, unknown model) is raised before any
        output, so a transport can still answer it as an ordinary error.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.request_timeout if self.request_timeout > 0 else None
        try:
            slot = await self.admission.acquire()
        except APIError as exc:
            if exc.status == 429:
                self.metrics.rejected.inc()
            raise
        running = RunningJob(self, job, slot, started, deadline)
        try:
            audio = await self._audio(job.audio)
            if job.check_audio is not None:
                job.check_audio(audio)
            if job.speakers is not None:
                running._diarization = await self._start_diarization(job, audio)
            stop = threading.Event()
            running._stop = stop
            running._stream = self._segment_stream(job.entry, audio, job.options, deadline, stop)
            # The info comes first, after the model loaded and the language was detected.
            running.info = await anext(running._stream)
            return running
        except BaseException:
            running.close()
            raise

    async def _audio(self, source: AudioSource) -> np.ndarray:
        cancel = threading.Event()
        try:
            return await run_in_threadpool(source, cancel)
        except asyncio.CancelledError:
            # The client left: the decoding thread would otherwise run on to the end of the file.
            cancel.set()
            raise

    async def _start_diarization(self, job: Job, audio: np.ndarray) -> diarizing.DiarizationJob:
        """The known speakers' references, then the diarization in a worker thread next to the recogniser."""
        references = await run_in_threadpool(diarizing.decode_references, job.speakers.known)
        stop = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            None,
            contextvars.copy_context().run,
            diarizing.diarize, self.manager, job.entry, audio, references, stop,
        )  # fmt: skip
        return diarizing.DiarizationJob(future, stop)

    def observe_done(self, model: str, info: TranscriptionInfo, elapsed: float) -> None:
        self.metrics.latency.labels(model).observe(elapsed)
        self.metrics.audio_seconds.labels(model).inc(info.duration)
        if info.duration > 0:
            self.metrics.real_time_factor.labels(model).observe(elapsed / info.duration)

    async def _segment_stream(
        self, entry: ModelEntry, audio: np.ndarray, options: TranscribeOptions, deadline: float | None,
        stop: threading.Event,
    ) -> AsyncIterator[TranscriptionInfo | Segment]:
        """The engine's output as it is produced: first the info, then segments in time order.

        Decoding runs in a worker thread, which stops before its next unit of work once `stop` is
        set (the job was closed) or the consumer stopped early.
        """
        if audio_io.is_silent(audio):
            yield silent_info(audio, options)
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def put(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop closed under us (shutdown)
                pass

        def produce() -> None:
            decoded = 0
            try:
                with self.manager.use(entry.engine, entry.model) as engine:
                    transcription = engine.transcribe(audio, options)
                    put(transcription.info)
                    with closing(transcription.segments) as segments:
                        for segment in segments:
                            if stop.is_set():
                                log.info("stopped decoding after %d segments: the client went away", decoded)
                                break
                            decoded += 1
                            put(segment)
                        else:
                            log.info("decoding finished: %d segments", decoded)
            except BaseException as exc:  # handed to the consumer, which decides the response
                put(exc)
            finally:
                put(_End())

        # The worker logs under the request's id: it runs in this request's context.
        loop.run_in_executor(None, contextvars.copy_context().run, produce)
        try:
            while True:
                item = await self._next(queue, deadline)
                if isinstance(item, _End):
                    break
                if isinstance(item, ModelNotFound):
                    raise APIError(str(item), status=404, param="model", code="model_not_found")
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    async def _next(self, queue: asyncio.Queue, deadline: float | None):
        if deadline is None:
            return await queue.get()
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(queue.get(), max(remaining, 0))
        except TimeoutError:
            raise self.timeout() from None

    def timeout(self) -> APIError:
        return APIError(
            f"The request took longer than this server allows ({self.request_timeout:g} seconds, "
            "EARSHOT_REQUEST_TIMEOUT) and was stopped.",
            status=504,
            type="server_error",
            code="timeout",
            # The same audio would take as long again.
            headers={"x-should-retry": "false"},
        )


def silent_info(audio: np.ndarray, options: TranscribeOptions) -> TranscriptionInfo:
    duration = len(audio) / SAMPLE_RATE
    return TranscriptionInfo(
        language=options.language or "en",
        language_probability=1.0,
        duration=duration,
        audio_tokens=0,
        prompt_tokens=0,
    )
