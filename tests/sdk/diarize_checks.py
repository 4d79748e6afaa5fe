"""Drives a live Earshot's diarization with the official Python SDK and prints the results, as JSON.

Standalone (only `openai` needed), so the tests can run it under several SDK releases:
    python diarize_checks.py BASE_URL MEETING_AUDIO KNOWN_SPEAKERS.json   ({"names": [...], "references": [...]})

1.x has no `known_speaker_*` keywords: they go through `extra_body`, as its users pass them; from
2.x on they are keywords. Every response is validated strictly against the SDK's models.
"""

import json
import sys

import openai
from openai import OpenAI

from harness import check, results

base_url, audio_path, known_path = sys.argv[1], sys.argv[2], sys.argv[3]
with open(known_path) as f:
    known_speakers = json.load(f)
names, references = known_speakers["names"], known_speakers["references"]
client = OpenAI(base_url=base_url, api_key="sk-test-1234", _strict_response_validation=True, max_retries=0)
major = int(openai.__version__.split(".")[0])


def audio():
    return open(audio_path, "rb")


def known(**kwargs):
    """The known speakers as this SDK release takes them."""
    fields = {"known_speaker_names": names, "known_speaker_references": references}
    if major >= 2:
        return {**kwargs, **fields}
    return {**kwargs, "extra_body": fields}


tr = client.audio.transcriptions
diarize = dict(model="gpt-4o-transcribe-diarize", response_format="diarized_json", chunking_strategy="auto")
check("diarized", lambda: tr.create(file=audio(), **diarize))
check("diarized_known", lambda: tr.create(file=audio(), **known(**diarize)))
check("json", lambda: tr.create(file=audio(), model="gpt-4o-transcribe-diarize", chunking_strategy="auto"))
check(
    "text",
    lambda: tr.create(file=audio(), model="gpt-4o-transcribe-diarize", response_format="text", chunking_strategy="auto"),
)
check("err_srt", lambda: tr.create(file=audio(), model="gpt-4o-transcribe-diarize", response_format="srt"))
check("err_prompt", lambda: tr.create(file=audio(), **diarize, prompt="Meeting notes."))
check(
    "err_bad_reference",
    lambda: tr.create(
        file=audio(), **diarize, extra_body={"known_speaker_names": ["x"], "known_speaker_references": [references[0][:200]]}
    ),
)
if major >= 2:
    # Streams of diarized_json: delta and segment events, then done.
    check(
        "stream",
        lambda: [e.model_dump(exclude_unset=True) for e in tr.create(file=audio(), **known(**diarize), stream=True)],
    )

print(json.dumps(results))
