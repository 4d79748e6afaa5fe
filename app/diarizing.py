"""diarized_json: speech recognition and speaker diarization on the same decoded audio.

The request's checks that need audio (input length vs chunking, known speakers' reference
clips) run where the audio is decoded; the diarization runs in a worker thread next to the
recogniser, on the same array; `Tagger` turns each recognised segment into speaker segments as
soon as the diarization is there, so a stream can emit them as the recogniser decodes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextvars
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

import numpy as np

from app import audio as audio_io
from app.errors import APIError
from app.streaming import failure_body
from engines import speakers, vad
from engines.base import SAMPLE_RATE, Segment, TranscriptionInfo, Turn
from engines.diarization import DiarizationStopped
from engines.manager import ModelManager
from engines.registry import ModelEntry

log = logging.getLogger("earshot.diarizing")

# OpenAI: "Required when using gpt-4o-transcribe-diarize for inputs longer than 30 seconds."
CHUNKING_REQUIRED_OVER_SECONDS = 30.0
# OpenAI: "Each sample must be between 2 and 10 seconds". Compressed formats decode a few
# milliseconds longer or shorter than what was encoded (codec priming and padding): 50 ms of slack.
REFERENCE_SECONDS = (2.0, 10.0)
REFERENCE_SLACK_SECONDS = 0.05
# Speech the VAD must find in a reference for its embedding to describe a voice.
MIN_REFERENCE_SPEECH_SECONDS = 1.0


def check_chunking(request, audio: np.ndarray) -> None:
    seconds = len(audio) / SAMPLE_RATE
    if request.entry.rules.chunking_over_30s and request.chunking_strategy is None and seconds > CHUNKING_REQUIRED_OVER_SECONDS:
        raise APIError(
            f"chunking_strategy is required for model '{request.model}' when the audio is longer than "
            f"{CHUNKING_REQUIRED_OVER_SECONDS:g} seconds (this file is {seconds:.1f} s). Use 'auto'.",
            param="chunking_strategy",
            code="invalid_value",
        )


def decode_reference(data_url: str, index: int) -> np.ndarray:
    """A known speaker's reference: `data:audio/<format>;base64,<data>`, any supported audio format."""

    def invalid(why: str) -> APIError:
        return APIError(
            f"Invalid 'known_speaker_references[{index}]': {why}", param="known_speaker_references", code="invalid_value"
        )

    _, _, payload = data_url.partition(",")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("the data URL's payload is not valid base64.") from None
    low, high = REFERENCE_SECONDS
    try:
        samples = audio_io.decode(io.BytesIO(raw), "gpt-4o", high + 1.0)
    except APIError:
        raise invalid("not audio in a supported format, or longer than 10 seconds.") from None
    seconds = len(samples) / SAMPLE_RATE
    if not low - REFERENCE_SLACK_SECONDS <= seconds <= high + REFERENCE_SLACK_SECONDS:
        raise invalid(f"each reference must be between {low:g} and {high:g} seconds long; this one is {seconds:.2f} s.")
    # A voice print of silence or noise would match some diarized voice all the same, and name it.
    if not np.isfinite(samples).all():
        raise invalid("its samples are not all finite numbers (NaN or infinity).")
    if audio_io.is_silent(samples):
        raise invalid("it is silent.")
    speech = vad.speech_seconds(samples)
    if speech < MIN_REFERENCE_SPEECH_SECONDS:
        raise invalid(
            f"it holds {speech:.1f} s of speech; a reference needs at least {MIN_REFERENCE_SPEECH_SECONDS:g} s "
            "of the speaker talking."
        )
    return samples


def decode_references(known: tuple[tuple[str, str], ...]) -> list[tuple[str, np.ndarray]]:
    """(name, data URL) pairs to (name, samples). Blocking: run it in a thread."""
    return [(name, decode_reference(ref, i)) for i, (name, ref) in enumerate(known)]


@dataclass
class SpeakerMap:
    """The diarization's turns, and which diarized speakers the known speakers matched."""

    turns: list[Turn]
    names: dict[str, str] = field(default_factory=dict)
    # Every known speaker name of the request, matched or not: letters never take them.
    reserved: list[str] = field(default_factory=list)


def diarize(
    manager: ModelManager,
    entry: ModelEntry,
    audio: np.ndarray,
    references: list[tuple[str, np.ndarray]],
    stop: threading.Event,
) -> SpeakerMap:
    """Blocking: diarize `audio` and match the known speakers' references against its speakers."""
    reserved = [name for name, _ in references]
    if audio_io.is_silent(audio):
        return SpeakerMap([], {}, reserved)
    with manager.use("pyannote", entry.diarization_model) as diarizer:
        result = diarizer.diarize(audio, embed_speakers=bool(references), should_stop=stop.is_set)
        names: dict[str, str] = {}
        if references:
            known = [(name, diarizer.embed(clip)) for name, clip in references]
            names = speakers.match_known_speakers(result.embeddings, known, diarizer.match_threshold)
    log.info(
        "diarized: %d turns, %d speakers, %d of %d known speakers matched",
        len(result.turns), len({t.speaker for t in result.turns}), len(names), len(references),
    )  # fmt: skip
    return SpeakerMap(result.turns, names, reserved)


class Tagger:
    """Recognised segments in, labelled speaker segments out, with response-wide ids."""

    def __init__(self, speaker_map: SpeakerMap) -> None:
        self._turns = sorted(speaker_map.turns, key=lambda t: (t.start, t.end))
        self._labeller = speakers.Labeller(speaker_map.names, speaker_map.reserved)
        self._count = 0

    def tag(self, segment: Segment) -> list[tuple[str, speakers.LabelledSegment]]:
        out = []
        for piece in speakers.attribute([segment], self._turns):
            if not piece.text:
                continue
            labelled = speakers.LabelledSegment(piece.start, piece.end, piece.text, self._labeller(piece.speaker))
            out.append((f"seg_{self._count}", labelled))
            self._count += 1
        return out


@dataclass
class DiarizationJob:
    """A diarization running in a worker thread; `stop` makes it give up at its next unit of work."""

    future: asyncio.Future[SpeakerMap]
    stop: threading.Event

    def cancel(self) -> None:
        """Stop the diarization. Nobody awaits it any more, so its outcome is taken here: an
        exception left in an unawaited future is logged by asyncio as an error."""
        if self.stop.is_set():
            return
        self.stop.set()
        # The request's context, so the log line carries its request id.
        self.future.add_done_callback(_outcome_taken, context=contextvars.copy_context())


def _outcome_taken(future: asyncio.Future) -> None:
    if future.cancelled():
        return
    exc = future.exception()
    if isinstance(exc, DiarizationStopped):
        log.info("diarization stopped: its request ended before it finished")
    elif exc is not None:
        log.debug("diarization failed after its request ended: %r", exc)


def _sse(payload: dict) -> dict:
    return {"data": json.dumps(payload, separators=(",", ":"), ensure_ascii=False)}


async def diarized_events(
    info: TranscriptionInfo,
    segments: AsyncIterator[Segment],
    speaker_map: Callable[[], Awaitable[SpeakerMap]],
    usage: Callable[[TranscriptionInfo, int], dict],
) -> AsyncIterator[dict]:
    """For each speaker segment, as the recogniser decodes: a `transcript.text.delta` carrying its
    `segment_id`, then its `transcript.text.segment`; finally `transcript.text.done` with the
    speaker-labelled transcript (diarized_json's `text`) and usage."""
    from app.render import segment_event

    tagged: list[speakers.LabelledSegment] = []
    output_tokens = 0
    try:
        async with aclosing(segments):
            tagger = Tagger(await speaker_map())
            async for segment in segments:
                output_tokens += len(segment.tokens)
                for segment_id, labelled in tagger.tag(segment):
                    delta = labelled.text if not tagged else " " + labelled.text
                    tagged.append(labelled)
                    yield _sse({"type": "transcript.text.delta", "delta": delta, "segment_id": segment_id})
                    yield _sse(segment_event(segment_id, labelled))
    except Exception as exc:  # the response has started: the error travels as an event
        yield _sse(failure_body(exc, "diarized transcription"))
        return
    yield _sse({"type": "transcript.text.done", "text": speakers.transcript_text(tagged), "usage": usage(info, output_tokens)})
