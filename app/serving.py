"""The work behind the routes: audio in, engine run off the event loop, result out.

There is one path from engine to response: `segment_stream` yields what the engine decodes, as
it decodes it; a non-streaming response is that stream collected.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, closing
from dataclasses import dataclass

import numpy as np
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from app import audio as audio_io
from app import diarizing
from app.admission import Admission
from app.errors import APIError
from app.metrics import Metrics
from app.render import TranscriptResult, diarized_json, render, usage
from app.streaming import event_response, transcript_events
from engines.base import SAMPLE_RATE, Segment, TranscribeOptions, TranscriptionInfo
from engines.manager import ModelManager
from engines.registry import ModelEntry
from engines.store import ModelNotFound

log = logging.getLogger("earshot.serving")


@dataclass
class _End:
    pass


class TranscriptionService:
    def __init__(
        self,
        manager: ModelManager,
        *,
        admission: Admission | None = None,
        metrics: Metrics | None = None,
        max_audio_seconds: float | None = None,
        sse_ping_seconds: float = 15.0,
        request_timeout: float = 0,
    ) -> None:
        self.manager = manager
        self.admission = admission or Admission(slots=8, max_queue=64)
        self.metrics = metrics or Metrics()
        self.metrics.queue_depth.set_function(lambda: self.admission.waiting)
        self.metrics.in_flight.set_function(lambda: self.admission.running)
        self.metrics.models_loaded.set_function(lambda: len(manager.loaded()))
        self.max_audio_seconds = max_audio_seconds
        self.sse_ping_seconds = sse_ping_seconds
        self.request_timeout = request_timeout

    async def handle(self, request) -> Response:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.request_timeout if self.request_timeout > 0 else None
        try:
            slot = await self.admission.acquire()
        except APIError as exc:
            if exc.status == 429:
                self.metrics.rejected.inc()
            raise
        handed_over = False
        job: diarizing.DiarizationJob | None = None
        try:
            audio = await self.load_audio(request)
            if getattr(request, "diarizes", False):
                job = await self.start_diarization(request, audio)
            options: TranscribeOptions = request.transcribe_options()
            stream = self.segment_stream(request.entry, audio, options, deadline)
            # The info comes first, after the model loaded and the language was detected: anything
            # that fails before it is still an ordinary HTTP error, not an event.
            info = await anext(stream)
            if job is not None:
                if request.streams:
                    events = diarizing.diarized_events(
                        info, stream, lambda: self._diarization_result(job, deadline), lambda i, n: usage(request, i, n)
                    )
                    handed_over = True
                    observed = self._observed(events, request.entry.id, info, started, slot, job.cancel)

                    def close() -> None:
                        slot.release()
                        job.cancel()

                    return event_response(observed, self.sse_ping_seconds, on_close=close)
                tagger = diarizing.Tagger(await self._diarization_result(job, deadline))
                segments = [segment async for segment in stream]
                self._observe_done(request.entry.id, info, loop.time() - started)
                result = TranscriptResult(task=options.task, info=info, segments=segments)
                tagged = [piece for segment in segments for piece in tagger.tag(segment)]
                return JSONResponse(diarized_json(result, tagged, usage(request, info, result.output_tokens)))
            if request.streams:
                events = transcript_events(
                    info, stream, logprobs=request.wants_logprobs, languages=request.reports_languages
                )
                handed_over = True
                observed = self._observed(events, request.entry.id, info, started, slot)
                return event_response(observed, self.sse_ping_seconds, on_close=slot.release)
            segments = [segment async for segment in stream]
            self._observe_done(request.entry.id, info, loop.time() - started)
            return render(request, TranscriptResult(task=options.task, info=info, segments=segments))
        finally:
            if not handed_over:
                slot.release()
                if job is not None:
                    job.cancel()

    async def start_diarization(self, request, audio: np.ndarray) -> diarizing.DiarizationJob:
        """Checks that need the audio, then the diarization, in a worker thread next to the recogniser."""
        diarizing.check_chunking(request, audio)
        references = await run_in_threadpool(diarizing.decode_references, request)
        stop = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            None,
            contextvars.copy_context().run,
            diarizing.diarize, self.manager, request.entry, audio, references, stop,
        )  # fmt: skip
        return diarizing.DiarizationJob(future, stop)

    async def _diarization_result(self, job: diarizing.DiarizationJob, deadline: float | None) -> diarizing.SpeakerMap:
        remaining = None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0)
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), remaining)
        except TimeoutError:
            job.cancel()
            raise self._timeout() from None
        except ModelNotFound as exc:
            # The server's diarization model is missing: the client's request was fine.
            raise APIError(
                f"Speaker diarization is unavailable: {exc}", status=500, code="diarization_model_not_found",
                headers={"x-should-retry": "false"},
            ) from None  # fmt: skip

    def _observe_done(self, model: str, info: TranscriptionInfo, elapsed: float) -> None:
        self.metrics.latency.labels(model).observe(elapsed)
        self.metrics.audio_seconds.labels(model).inc(info.duration)
        if info.duration > 0:
            self.metrics.real_time_factor.labels(model).observe(elapsed / info.duration)

    async def _observed(
        self, events: AsyncIterator[dict], model: str, info: TranscriptionInfo, started: float, slot,
        stop: Callable[[], None] | None = None,
    ) -> AsyncIterator[dict]:
        """The event stream, holding the decoding slot until it ends and timing it; `stop` ends
        work running beside it."""
        loop = asyncio.get_running_loop()
        first = True
        try:
            async with aclosing(events):
                async for event in events:
                    if first and '"transcript.text.delta"' in event["data"]:
                        self.metrics.first_delta.labels(model).observe(loop.time() - started)
                        first = False
                    yield event
            self._observe_done(model, info, loop.time() - started)
        finally:
            slot.release()
            if stop is not None:
                stop()

    async def load_audio(self, request) -> np.ndarray:
        upload = request.file
        audio_io.check_extension(upload.filename)
        cancel = threading.Event()
        try:
            return await run_in_threadpool(
                audio_io.decode, upload.file, request.entry.rules.error_style, self.max_audio_seconds, cancel
            )
        except asyncio.CancelledError:
            # The client left: the decoding thread would otherwise run on to the end of the file.
            cancel.set()
            raise

    async def segment_stream(
        self, entry: ModelEntry, audio: np.ndarray, options: TranscribeOptions, deadline: float | None = None
    ) -> AsyncIterator[TranscriptionInfo | Segment]:
        """The engine's output as it is produced: first the info, then segments in time order.

        Decoding runs in a worker thread. When the consumer stops early (client gone), the worker
        stops before the engine's next unit of work.
        """
        if audio_io.is_silent(audio):
            yield silent_info(audio, options)
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

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
            raise self._timeout() from None

    def _timeout(self) -> APIError:
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
