"""Drives a live Earshot with the official Python SDK and prints what the SDK returned, as JSON.

Standalone (only `openai` needed), so the tests can run it under several SDK releases:
    python python_checks.py BASE_URL AUDIO.wav NATIVE_MODEL_NAME SPEECH.ogg
"""

import json
import sys

from openai import OpenAI

from harness import check, results

base_url, audio_path, native, speech_path = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
client = OpenAI(base_url=base_url, api_key="sk-test-1234", _strict_response_validation=True, max_retries=0)


def audio():
    return open(audio_path, "rb")


tr = client.audio.transcriptions
check("json", lambda: tr.create(file=audio(), model="whisper-1"))
check("text", lambda: tr.create(file=audio(), model="whisper-1", response_format="text"))
check("srt", lambda: tr.create(file=audio(), model="whisper-1", response_format="srt"))
check("vtt", lambda: tr.create(file=audio(), model="whisper-1", response_format="vtt"))
check(
    "verbose",
    lambda: tr.create(
        file=audio(), model="whisper-1", response_format="verbose_json", timestamp_granularities=["word", "segment"]
    ),
)
check("verbose_default", lambda: tr.create(file=audio(), model="whisper-1", response_format="verbose_json"))
check(
    "logprobs",
    lambda: tr.create(file=audio(), model="gpt-4o-transcribe", include=["logprobs"], temperature=0.0, language="en"),
)
check("mini_text", lambda: tr.create(file=audio(), model="gpt-4o-mini-transcribe", response_format="text"))
check("native", lambda: tr.create(file=audio(), model=native, response_format="verbose_json"))
check("bytes_upload", lambda: tr.create(file=open(audio_path, "rb").read(), model="whisper-1"))
check(
    "chunking_object",
    lambda: tr.create(
        file=open(speech_path, "rb"),
        model="whisper-1",
        extra_body={"chunking_strategy": {"type": "server_vad", "threshold": 0.4, "silence_duration_ms": 300}},
    ),
)
check(
    "stream",
    lambda: [
        e.model_dump(exclude_unset=True)
        for e in tr.create(file=audio(), model="gpt-4o-transcribe", stream=True, include=["logprobs"])
    ],
)
check("stream_whisper1", lambda: [e.model_dump() for e in tr.create(file=audio(), model="whisper-1", stream=True)])
check("chunking_auto", lambda: tr.create(file=open(speech_path, "rb"), model="whisper-1", chunking_strategy="auto"))
check("translation", lambda: client.audio.translations.create(file=audio(), model="whisper-1"))
check(
    "translation_verbose",
    lambda: client.audio.translations.create(file=audio(), model="whisper-1", response_format="verbose_json"),
)
check("translation_text", lambda: client.audio.translations.create(file=audio(), model="whisper-1", response_format="text"))
check("models", lambda: [m.id for m in client.models.list()])
check("model", lambda: client.models.retrieve("whisper-1"))
check("request_id", lambda: tr.with_raw_response.create(file=audio(), model="whisper-1").request_id)

check("err_missing_model", lambda: client.models.retrieve("no-such-model"))
check("err_unknown_model", lambda: tr.create(file=audio(), model="whisper-9"))
check("err_verbose_gpt4o", lambda: tr.create(file=audio(), model="gpt-4o-transcribe", response_format="verbose_json"))
check("err_temperature", lambda: tr.create(file=audio(), model="whisper-1", temperature=3))
check("err_format", lambda: tr.create(file=("notes.txt", b"hello", "text/plain"), model="whisper-1"))
check("err_undecodable", lambda: tr.create(file=("a.mp3", b"\0" * 2000, "audio/mpeg"), model="whisper-1"))
check(
    "err_undecodable_gpt4o",
    lambda: tr.create(file=("a.wav", b"\0" * 2000, "audio/wav"), model="gpt-4o-mini-transcribe"),
)
check("err_too_large", lambda: tr.create(file=("big.wav", b"\0" * (26_214_400 + 1000), "audio/wav"), model="whisper-1"))

print(json.dumps(results))
