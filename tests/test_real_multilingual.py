"""Real multilingual Whisper base (Systran's faster-whisper-base, from the locked dev wheels, joined
from two parts): language detection, transcription in the spoken language and `<|translate|>`
into English, on espeak-ng's Spanish, French and German voices, through the Python SDK."""

from __future__ import annotations

import openai
import pytest

from tests import real_speech as rs
from tests.conftest import start_real_server, stop_server

# Measured per sentence with base on these espeak-ng voices (speed 140): transcription 11-44 % WER
# against the spoken text (espeak's accents are hard for a 74 M model). Translations are loose
# (base translates poorly: "The train comes out of the station with the masses"), so they are
# checked by the content words they must carry and by not being the source words again. A wrong
# language or task gives close to 100 %.
MAX_TRANSCRIBE_WER = 0.6
SPEED = 140


@pytest.fixture(scope="module")
def client(real_store, tmp_path_factory):
    live = start_real_server(real_store, "faster-whisper-base", tmp_path_factory.mktemp("logs") / "base.log")
    yield openai.OpenAI(base_url=live.v1, api_key="unused", max_retries=0, _strict_response_validation=True)
    stop_server(live)


@pytest.fixture(scope="module")
def clips() -> dict[str, bytes]:
    if not rs.espeak_available():
        pytest.fail("espeak-ng is required for the real-model tests (apt-get install espeak-ng)")
    return {voice: rs.compose([(text, rs.espeak(text, voice, SPEED))]).wav() for voice, _, text, *_ in rs.FOREIGN}


@pytest.mark.parametrize("voice,language,text,english,keywords", rs.FOREIGN, ids=[f[0] for f in rs.FOREIGN])
def test_detects_the_language_and_transcribes_in_it(client, clips, voice, language, text, english, keywords):
    result = client.audio.transcriptions.create(
        file=("clip.wav", clips[voice]), model="whisper-1", response_format="verbose_json"
    )
    assert result.language == language
    assert rs.word_error_rate([(text, result.text)]) <= MAX_TRANSCRIBE_WER, result.text


@pytest.mark.parametrize("voice,language,text,english,keywords", rs.FOREIGN, ids=[f[0] for f in rs.FOREIGN])
def test_translates_into_english(client, clips, voice, language, text, english, keywords):
    result = client.audio.translations.create(
        file=("clip.wav", clips[voice]), model="whisper-1", response_format="verbose_json"
    )
    assert result.language == "english" and result.task == "translate"
    assert keywords & set(rs.normalise(result.text)), result.text
    # Not the source language again: most of the source's words are gone.
    assert rs.word_error_rate([(text, result.text)]) > 0.6, result.text


def test_a_given_language_is_obeyed(client, clips):
    """`language=es` on Spanish speech, streamed through a gpt-4o name: the Spanish words."""
    voice, _, text, *_ = rs.FOREIGN[0]
    events = list(
        client.audio.transcriptions.create(
            file=("clip.wav", clips[voice]), model="gpt-4o-transcribe", language="es", stream=True
        )
    )
    assert events[-1].type == "transcript.text.done"
    assert rs.word_error_rate([(text, events[-1].text)]) <= MAX_TRANSCRIBE_WER, events[-1].text


def test_languages_restrict_detection_and_come_back(client, clips):
    """gpt-transcribe's `languages[]`: the most probable allowed language is decoded and returned;
    with the spoken one not allowed, the audio is decoded in an allowed one but `languages` is
    `[]` (measured with base on these clips: 0.93-0.96 for the spoken language, under 0.03 for any
    other)."""
    voice, language, text, *_ = rs.FOREIGN[0]  # Spanish
    allowed = client.audio.transcriptions.create(
        file=("clip.wav", clips[voice]), model="gpt-transcribe", languages=["fr", "es"]
    )
    assert [lang.code for lang in allowed.languages] == ["es"]
    assert rs.word_error_rate([(text, allowed.text)]) <= MAX_TRANSCRIBE_WER, allowed.text
    excluded = client.audio.transcriptions.create(
        file=("clip.wav", clips[voice]), model="gpt-transcribe", languages=["fr", "de"]
    )
    assert excluded.languages == [], excluded
    # One allowed language is no choice: decoded in it, and returned.
    french_voice, _, french_text, *_ = rs.FOREIGN[1]
    fixed = client.audio.transcriptions.create(
        file=("clip.wav", clips[french_voice]), model="gpt-transcribe", languages=["fr"], stream=True
    )
    done = list(fixed)[-1]
    assert [lang.code for lang in done.languages] == ["fr"]
    assert rs.word_error_rate([(french_text, done.text)]) <= MAX_TRANSCRIBE_WER, done.text


def test_languages_restrict_detection_when_chunking(client, clips):
    voice, language, text, *_ = rs.FOREIGN[2]  # German
    result = client.audio.transcriptions.create(
        file=("clip.wav", clips[voice]), model="gpt-transcribe", languages=["de", "en"], chunking_strategy="auto"
    )
    assert [lang.code for lang in result.languages] == ["de"]
    result = client.audio.transcriptions.create(
        file=("clip.wav", clips[voice]), model="gpt-transcribe", languages=["en", "es"], chunking_strategy="auto"
    )
    assert result.languages == []
