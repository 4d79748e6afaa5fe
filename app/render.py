"""Turning a finished transcription into each of OpenAI's response formats."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastapi.responses import JSONResponse, PlainTextResponse, Response

from engines.base import Segment, TranscriptionInfo
from engines.languages import language_name
from engines.registry import ModelEntry
from engines.speakers import LabelledSegment, transcript_text


@dataclass
class TranscriptResult:
    task: str
    info: TranscriptionInfo
    segments: list[Segment]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments).strip()

    @property
    def output_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.segments)


def duration_usage(info: TranscriptionInfo) -> dict:
    return {"type": "duration", "seconds": math.ceil(info.duration)}


def token_usage(info: TranscriptionInfo, output_tokens: int) -> dict:
    """Audio tokens: encoder positions over real audio (one per 20 ms, padding excluded).
    Text tokens: the caller's prompt as fed to the decoder. Output: tokens of the kept decode."""
    input_tokens = info.audio_tokens + info.prompt_tokens
    return {
        "type": "tokens",
        "input_tokens": input_tokens,
        "input_token_details": {"text_tokens": info.prompt_tokens, "audio_tokens": info.audio_tokens},
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


# Below this probability (Whisper's own, for the language it decoded in) the language counts as
# not reliably detected: `languages` is `[]`. Measured with multilingual base on this project's
# speech and noise: see the README's gpt-transcribe section.
LANGUAGE_REPORT_THRESHOLD = 0.5


def reported_languages(info: TranscriptionInfo, text: str) -> list[dict]:
    """OpenAI's `languages`: the language the transcript is in, or `[]` when nothing was said or
    the model was unsure of it."""
    if not text.strip() or info.language_probability < LANGUAGE_REPORT_THRESHOLD:
        return []
    return [{"code": info.language}]


def logprobs_of(segments: list[Segment]) -> list[dict]:
    return [
        {"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes}
        for seg in segments
        for lp in seg.logprobs or []
    ]


def timestamp(seconds: float, decimal_marker: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def srt(segments: list[Segment]) -> str:
    cues = [
        f"{i}\n{timestamp(s.start, ',')} --> {timestamp(s.end, ',')}\n{s.text.strip()}\n\n"
        for i, s in enumerate(segments, start=1)
    ]
    # OpenAI's SRT bodies end with one extra newline after the last cue's blank line.
    return "".join(cues) + "\n" if cues else ""


def vtt(segments: list[Segment]) -> str:
    cues = "".join(f"{timestamp(s.start, '.')} --> {timestamp(s.end, '.')}\n{s.text.strip()}\n\n" for s in segments)
    return "WEBVTT\n\n" + cues


def verbose_json(result: TranscriptResult, granularities: frozenset[str]) -> dict:
    body: dict = {
        "task": result.task,
        "language": "english" if result.task == "translate" else language_name(result.info.language),
        "duration": result.info.duration,
        "text": result.text,
    }
    if "segment" in granularities:
        body["segments"] = [
            {
                "id": s.id,
                "seek": s.seek,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": s.tokens,
                "temperature": s.temperature,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
            }
            for s in result.segments
        ]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word.strip(), "start": w.start, "end": w.end} for s in result.segments for w in s.words or []
        ]
    body["usage"] = duration_usage(result.info)
    return body


def usage(entry: ModelEntry, info: TranscriptionInfo, output_tokens: int) -> dict:
    """The usage the model's rules call for: `tokens` (gpt-4o names) or `duration` (whisper-1)."""
    if entry.rules.usage == "tokens":
        return token_usage(info, output_tokens)
    return duration_usage(info)


def segment_event(segment_id: str, segment: LabelledSegment) -> dict:
    """One diarized segment: an element of diarized_json's `segments` and a stream event alike."""
    return {
        "type": "transcript.text.segment",
        "id": segment_id,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "speaker": segment.speaker,
    }


def diarized_json(result: TranscriptResult, tagged: list[tuple[str, LabelledSegment]], usage: dict) -> dict:
    """`text` is the speaker-labelled transcript, one turn per line (`<speaker>: <text>`)."""
    return {
        "task": "transcribe",
        "duration": result.info.duration,
        "text": transcript_text([segment for _, segment in tagged]),
        "segments": [segment_event(segment_id, segment) for segment_id, segment in tagged],
        "usage": usage,
    }


def render(request, result: TranscriptResult) -> Response:
    fmt = request.response_format
    if fmt == "text":
        return PlainTextResponse(result.text + "\n")
    if fmt == "srt":
        return PlainTextResponse(srt(result.segments))
    if fmt == "vtt":
        return PlainTextResponse(vtt(result.segments))
    if fmt == "verbose_json":
        return JSONResponse(verbose_json(result, request.granularities))
    body: dict = {"text": result.text}
    if request.reports_languages:
        body["languages"] = reported_languages(result.info, result.text)
    if request.wants_logprobs:
        body["logprobs"] = logprobs_of(result.segments)
    body["usage"] = usage(request.entry, result.info, result.output_tokens)
    return JSONResponse(body)
