"""`gpt-transcribe`, the sixth model of the 2026 SDKs: `keywords[]` and `languages[]` in, `languages`
out (json and the stream's done event), under the official Python SDK's strict validation.

Real tiny.en for what the words and languages are; the wired test model for the request rules and
the form encodings (the text does not matter there). Multilingual restriction: test_real_multilingual.py.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest

from tests import real_speech as rs
from tests.audio_fixtures import encode

# Rare words and names, each sentence with the keywords a user would send (hibari's voice).
RARE = [
    ("Please forward the minutes to Siobhan before Thursday.", ["Siobhan"]),
    ("The fossil they found was a Tiktaalik, not a fish.", ["Tiktaalik"]),
    ("Doctor Nguyen prescribed Zyrtec for the allergy.", ["Nguyen", "Zyrtec"]),
    ("We deployed the Kubernetes cluster with Terraform yesterday.", ["Kubernetes", "Terraform"]),
    ("Our colleague Xiaoqing will present the Quokka project.", ["Xiaoqing", "Quokka"]),
    ("The shipment to Reykjavik was delayed by the Eyjafjallajokull eruption.", ["Reykjavik", "Eyjafjallajokull"]),
    ("Ask Saoirse about the Pfizer contract.", ["Saoirse", "Pfizer"]),
    ("The new model is called Earshot and it runs on CTranslate2.", ["Earshot", "CTranslate2"]),
]
# Measured with tiny.en on these sentences: 5 of the 14 words spelled right without keywords, 12
# with them (base: 4 and 13; as hotwords or as the prompt alike). The bounds leave three words of
# room either way for another CPU's int8 numerics.
MIN_WITH_KEYWORDS = 9
MIN_GAIN = 4
MAX_WER = 0.2


@pytest.fixture(scope="module")
def wired(server):
    return openai.OpenAI(base_url=server.v1, api_key="k", max_retries=0, _strict_response_validation=True)


@pytest.fixture(scope="module")
def clip() -> rs.Clip:
    return rs.compose([(rs.SENTENCES[0], rs.hibari(rs.SENTENCES[0])), (rs.SENTENCES[3], rs.hibari(rs.SENTENCES[3]))])


def test_listed_with_the_other_models(wired):
    assert "gpt-transcribe" in {m.id for m in wired.models.list().data}


def test_keywords_and_languages_in_languages_out(real_client, clip):
    result = real_client.audio.transcriptions.create(
        file=("clip.wav", clip.wav()), model="gpt-transcribe", keywords=["Earshot", "quick brown fox"],
        languages=["en", "de"],
    )
    assert [language.code for language in result.languages] == ["en"]
    assert rs.word_error_rate([(clip.text, result.text)]) <= MAX_WER, result.text
    assert result.usage.type == "tokens"
    # The keywords are text the decoder reads: they count as text input tokens.
    assert result.usage.input_token_details.text_tokens >= 4


def test_the_stream_ends_with_the_languages(real_client, clip):
    events = list(
        real_client.audio.transcriptions.create(
            file=("clip.wav", clip.wav()), model="gpt-transcribe", keywords=["Earshot"], stream=True
        )
    )
    done = events[-1]
    assert done.type == "transcript.text.done"
    assert [language.code for language in done.languages] == ["en"]
    assert "".join(e.delta for e in events[:-1]).strip() == done.text.strip()


def test_nothing_said_is_no_language(real_client):
    silence = encode(np.zeros(16000 * 3, dtype=np.float32), "wav")
    result = real_client.audio.transcriptions.create(file=("s.wav", silence), model="gpt-transcribe")
    assert result.text == "" and result.languages == []
    assert real_client.audio.transcriptions.create(file=("s.wav", silence), model="gpt-transcribe",
                                            response_format="text") == "\n"


def test_keywords_teach_the_model_rare_words(real_client):
    def spelled(with_keywords: bool) -> int:
        hits = 0
        for sentence, words in RARE:
            text = real_client.audio.transcriptions.create(
                file=("rare.wav", rs.compose([(sentence, rs.hibari(sentence))]).wav()), model="gpt-transcribe",
                **({"keywords": words} if with_keywords else {}),
            ).text.lower()
            hits += sum(word.lower() in text for word in words)
        return hits

    without, with_keywords = spelled(False), spelled(True)
    assert with_keywords >= MIN_WITH_KEYWORDS and with_keywords - without >= MIN_GAIN, (without, with_keywords)


@pytest.mark.parametrize(
    "fields,param",
    [
        ({"model": "whisper-1", "keywords": ["Earshot"]}, "keywords"),
        ({"model": "gpt-4o-transcribe", "languages": ["en"]}, "languages"),
        ({"model": "gpt-transcribe", "languages": ["xx"]}, "languages"),
        ({"model": "gpt-transcribe", "languages": ["english"]}, "languages"),
        ({"model": "gpt-transcribe", "keywords": [""]}, "keywords"),
        ({"model": "gpt-transcribe", "keywords": ["x" * 101]}, "keywords"),
        ({"model": "gpt-transcribe", "keywords": [f"w{i}" for i in range(101)]}, "keywords"),
        ({"model": "gpt-transcribe", "language": "de", "languages": ["en", "fr"]}, "language"),
        ({"model": "gpt-transcribe", "response_format": "verbose_json"}, "response_format"),
        ({"model": "gpt-transcribe", "include": ["logprobs"]}, "include"),
    ],
)
def test_bad_values_are_refused_naming_the_param(wired, fields, param):
    with pytest.raises(openai.BadRequestError) as caught:
        wired.audio.transcriptions.create(file=("a.wav", encode(np.zeros(16000, np.float32), "wav")), **fields)
    error = caught.value.body
    assert caught.value.status_code == 400 and error["param"] == param, error


@pytest.mark.parametrize(
    "encoding",
    ["brackets", "repeated", "json-string"],
)
def test_every_array_encoding_is_read(server, encoding):
    keywords, languages = ["Earshot", "quick brown fox"], ["EN", "fr"]
    if encoding == "brackets":  # what both SDKs send
        data = {"keywords[]": keywords, "languages[]": languages}
    elif encoding == "repeated":
        data = {"keywords": keywords, "languages": languages}
    else:
        data = {"keywords": json.dumps(keywords), "languages": json.dumps(languages)}
    resp = httpx.post(
        server.v1 + "/audio/transcriptions", data={"model": "gpt-transcribe", **data},
        files={"file": ("a.wav", encode(np.zeros(16000, np.float32), "wav"))}, timeout=60,
    )
    assert resp.status_code == 200, resp.text
    assert "languages" in resp.json()
    # One keyword of several words stays one keyword; a wrong one in any encoding is still named.
    bad = {k: (v if "languages" not in k else json.dumps(["en", "zz"]) if encoding == "json-string"
               else ["en", "zz"]) for k, v in data.items()}
    resp = httpx.post(
        server.v1 + "/audio/transcriptions", data={"model": "gpt-transcribe", **bad},
        files={"file": ("a.wav", encode(np.zeros(16000, np.float32), "wav"))}, timeout=60,
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "languages", resp.text
