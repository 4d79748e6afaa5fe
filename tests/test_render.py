"""Renderers, byte for byte, on constructed segments."""

import json

from app.render import TranscriptResult, srt, timestamp, token_usage, verbose_json, vtt
from engines.base import Segment, TranscriptionInfo, Word


def seg(i, start, end, text, words=None):
    return Segment(
        id=i, seek=0, start=start, end=end, text=text, tokens=[1, 2], temperature=0.0, avg_logprob=-0.1,
        compression_ratio=1.0, no_speech_prob=0.01, words=words,
    )


SEGS = [seg(0, 0.0, 1.5, " Hello there."), seg(1, 1.6, 3661.2345, " General Kenobi!")]


def test_timestamps_always_show_hours():
    assert timestamp(0, ".") == "00:00:00.000"
    assert timestamp(3661.2345, ",") == "01:01:01,234"
    assert timestamp(59.9996, ".") == "00:01:00.000"


def test_srt_bytes():
    assert srt(SEGS) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
        "2\n00:00:01,600 --> 01:01:01,234\nGeneral Kenobi!\n\n\n"
    )
    assert srt([]) == ""


def test_vtt_bytes():
    assert vtt(SEGS) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:01.500\nHello there.\n\n"
        "00:00:01.600 --> 01:01:01.234\nGeneral Kenobi!\n\n"
    )
    assert vtt([]) == "WEBVTT\n\n"


def info(**kw):
    base = dict(language="de", language_probability=0.9, duration=3.5, audio_tokens=175, prompt_tokens=4)
    base.update(kw)
    return TranscriptionInfo(**base)


def test_verbose_json_words_only_omits_segments_and_strips_words():
    words = [Word(" Hallo", 0.0, 0.5, 0.9), Word(" Welt", 0.5, 1.0, 0.8)]
    result = TranscriptResult("transcribe", info(), [seg(0, 0.0, 1.0, " Hallo Welt", words)])
    body = verbose_json(result, frozenset({"word"}))
    assert list(body) == ["task", "language", "duration", "text", "words", "usage"]
    assert body["language"] == "german"
    assert body["text"] == "Hallo Welt"
    assert body["words"] == [{"word": "Hallo", "start": 0.0, "end": 0.5}, {"word": "Welt", "start": 0.5, "end": 1.0}]
    assert body["usage"] == {"type": "duration", "seconds": 4}


def test_verbose_json_translation_is_english():
    result = TranscriptResult("translate", info(), SEGS)
    body = verbose_json(result, frozenset({"segment"}))
    assert body["task"] == "translate" and body["language"] == "english"
    assert [s["id"] for s in body["segments"]] == [0, 1]
    assert set(body["segments"][0]) == {
        "id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"
    }
    json.dumps(body)


def test_token_usage_adds_up():
    usage = token_usage(info(), output_tokens=10)
    assert usage == {
        "type": "tokens",
        "input_tokens": 179,
        "input_token_details": {"text_tokens": 4, "audio_tokens": 175},
        "output_tokens": 10,
        "total_tokens": 189,
    }
