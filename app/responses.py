"""HTTP answers: a validated form becomes a serving job, and the running job one response.

One place per output shape: `app.render` (json, text, srt, vtt, verbose_json, diarized_json),
`app.streaming` (SSE transcript events), `app.diarizing.diarized_events` (SSE with speakers).
"""

from __future__ import annotations

import functools

from fastapi.responses import JSONResponse, Response

from app import audio as audio_io
from app import diarizing
from app.render import TranscriptResult, diarized_json, render, usage
from app.serving import Job, RunningJob, Speakers, TranscriptionService
from app.streaming import event_response, transcript_events


def job_of(request, max_audio_seconds: float | None) -> Job:
    """The form's job: its upload decoded in a worker thread, its options, its speakers."""
    upload = request.file
    audio_io.check_extension(upload.filename)
    error_style = request.entry.rules.error_style

    def decode(cancel):
        return audio_io.decode(upload.file, error_style, max_audio_seconds, cancel)

    diarizes = getattr(request, "diarizes", False)
    return Job(
        entry=request.entry,
        options=request.transcribe_options(),
        audio=decode,
        speakers=Speakers(tuple(request.known_speakers)) if diarizes else None,
        check_audio=functools.partial(diarizing.check_chunking, request) if diarizes else None,
    )


async def answer(service: TranscriptionService, request, *, ping_seconds: float) -> Response:
    running = await service.start(job_of(request, service.max_audio_seconds))
    streaming = False
    try:
        if request.streams:
            response = event_response(_events(request, running), ping_seconds, on_close=running.close)
            streaming = True
            return response
        return await _whole(request, running)
    finally:
        if not streaming:
            running.close()


def _events(request, running: RunningJob):
    info = running.info
    if running.job.speakers is not None:
        return diarizing.diarized_events(
            info, running.segments(), running.speaker_map, lambda i, n: usage(request.entry, i, n)
        )
    return transcript_events(
        info, running.segments(), logprobs=request.wants_logprobs, languages=request.reports_languages
    )


async def _whole(request, running: RunningJob) -> Response:
    if running.job.speakers is not None:
        tagger = diarizing.Tagger(await running.speaker_map())
        segments = await running.collect()
        result = TranscriptResult(task=running.task, info=running.info, segments=segments)
        tagged = [piece for segment in segments for piece in tagger.tag(segment)]
        return JSONResponse(diarized_json(result, tagged, usage(request.entry, running.info, result.output_tokens)))
    segments = await running.collect()
    return render(request, TranscriptResult(task=running.task, info=running.info, segments=segments))
