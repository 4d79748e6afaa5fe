"""Speech in, right words out: the committed demo model (`models/earshot-tiny-en`, trained by
`tools/train_tiny_model.py`) through the live server and the official Python SDK.

The audio is synthesised here with espeak-ng voices and speeds the model never heard in training
(checked against the model's own recipe, `training.json`), as clips of sentences with pauses, so
the true speech times are known. Needs `espeak-ng` (installed by `.ci/run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import openai
import pytest

from tests.audio_fixtures import encode
from tests.conftest import ROOT, start_server, stop_server
from tools import tiny_speech
from tools.tiny_speech import SAMPLE_RATE, Voice

MODEL_DIR = ROOT / "models" / "earshot-tiny-en"
RECIPE = json.loads((MODEL_DIR / "training.json").read_text())

# Held-out voices (variant or base voice never in training) at held-out speeds, and sentences of
# the model's vocabulary. Each clip: silence (LEADS), sentences with pauses, 0.6 s of silence.
VOICES = (
    Voice("en-us", "m5", 150, 50),
    Voice("en", "f3", 175, 60),
    Voice("en-gb-x-rp", "m5", 175, 40),
    Voice("en-gb-x-gbcwmd", "m3", 150, 55),
)
CLIPS = (
    (" Please call me at four seven one nine.", " Turn off the lights in the house.", " Where is my phone?"),
    (" The small dog is in the car.", " My number is two zero eight six five."),
    (" Good morning.", " Open the blue window today.", " What time is it now?"),
    (" Eight three and five one.", " Coffee is hot tomorrow."),
)
PAUSES = (0.9, 1.3, 0.7)
# Leading silence per clip; beyond 1 s the model's generation_config.json must lift
# faster-whisper's limit on the first timestamp for the first segment to start right.
LEADS = (0.5, 0.5, 0.5, 0.5, 1.5, 2.5, 0.5, 4.0)
# And as many again drawn from the model's grammar (a fixed seed, not chosen by looking at results).
_rng = np.random.default_rng(2026)
CLIPS += tuple(tuple(tiny_speech.sentence(_rng) for _ in range(int(_rng.integers(1, 4)))) for _ in range(4))
VOICES += (
    Voice("en-029", "f3", 150, 45),
    Voice("en-gb-x-gbcwmd", "f3", 175, 50),
    Voice("en-us", "f3", 150, 65),
    Voice("en-gb-x-rp", "m5", 175, 50),
)

# Issue #8's targets: WER <= 5 % and segment times within 0.3 s. The committed model measures
# 4.4 % here (4 errors in 90 words; VAD and stream paths 3.3-4.4 %) and puts all 36 segment
# boundaries within 0.17 s, so these are the targets themselves; where a path is weaker (word
# alignment, translation) its bound says so.
MAX_WER = 0.05
MAX_TIME_ERROR = 0.3  # seconds between a segment's start/end and the real speech start/end
MIN_WORDS_PLACED = 0.8  # share of words whose times lie in their sentence's (± MAX_TIME_ERROR)


@dataclass
class Clip:
    wav: bytes
    sentences: tuple[str, ...]
    spans: list[tuple[float, float]]  # where each sentence's speech really starts and ends
    voice: Voice


def _clip(sentences: tuple[str, ...], voice: Voice, lead: float) -> Clip:
    parts = [np.zeros(int(lead * SAMPLE_RATE), np.float32)]
    spans = []
    t = lead
    for k, text in enumerate(sentences):
        speech = tiny_speech.synthesise(text, voice)
        on, off = tiny_speech.speech_bounds(speech)
        spans.append((t + on / SAMPLE_RATE, t + off / SAMPLE_RATE))
        pause = PAUSES[k % len(PAUSES)] if k < len(sentences) - 1 else 0.6
        parts += [speech, np.zeros(int(pause * SAMPLE_RATE), np.float32)]
        t += (len(speech) + int(pause * SAMPLE_RATE)) / SAMPLE_RATE
    return Clip(encode(np.concatenate(parts) * 0.6), sentences, spans, voice)


@pytest.fixture(scope="module")
def clips() -> list[Clip]:
    if not tiny_speech.espeak_available():
        pytest.fail("espeak-ng is required for the demo model tests (apt-get install espeak-ng)")
    return [_clip(sentences, voice, lead) for sentences, voice, lead in zip(CLIPS, VOICES, LEADS, strict=True)]


@pytest.fixture(scope="module")
def tiny_server(tmp_path_factory, diarization_pipeline_dir):
    tmp = tmp_path_factory.mktemp("tiny")
    # `earshot serve --demo` is the documented way to serve the demo model.
    live = start_server(
        {"EARSHOT_MODELS_DIR": str(tmp), "EARSHOT_DIARIZATION_MODEL": str(diarization_pipeline_dir)},
        tmp / "server.log",
        args=("--demo",),
    )
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def client(tiny_server):
    return openai.OpenAI(base_url=tiny_server.v1, api_key="unused", max_retries=0, _strict_response_validation=True)


def _wer(pairs: list[tuple[str, str]]) -> float:
    errors = sum(tiny_speech.word_errors(tiny_speech.normalise(r), tiny_speech.normalise(h)) for r, h in pairs)
    return errors / sum(len(tiny_speech.normalise(r)) for r, _ in pairs)


def test_demo_server_says_it_serves_a_demo_model(client, tiny_server):
    assert "DEMO MODEL: earshot-tiny-en recognises only" in tiny_server.log()
    assert "earshot-tiny-en" in [m.id for m in client.models.list()]


def test_test_audio_is_held_out_and_in_vocabulary():
    held = RECIPE["held_out_voices"]
    trained = RECIPE["train_voices"]
    for voice in VOICES:
        assert voice.speed in held["speeds"] and voice.speed not in trained["speeds"]
        assert voice.base in held["bases"] or voice.variant in held["variants"]
        assert voice.base not in trained["bases"] or voice.variant not in trained["variants"]
    vocabulary = set(RECIPE["vocabulary"])
    for sentences in CLIPS:
        for sentence in sentences:
            assert set(tiny_speech.normalise(sentence)) <= vocabulary, sentence


def test_transcripts_and_segment_times_through_the_sdk(client, clips):
    pairs, errors = [], []
    for clip in clips:
        result = client.audio.transcriptions.create(
            file=("clip.wav", clip.wav),
            model="whisper-1",
            response_format="verbose_json",
            timestamp_granularities=["segment"],
        )
        assert result.language == "english"
        pairs.append(("".join(clip.sentences), result.text))
        # One segment per sentence, starting and ending where its speech does.
        assert len(result.segments) == len(clip.sentences), (clip.voice, result.text)
        for seg, (start, end) in zip(result.segments, clip.spans):
            errors += [abs(seg.start - start), abs(seg.end - end)]
    assert _wer(pairs) <= MAX_WER, pairs
    assert max(errors) <= MAX_TIME_ERROR, errors


@pytest.mark.parametrize("chunking", ["auto", {"type": "server_vad", "silence_duration_ms": 400}])
def test_vad_chunked_plain_text_hears_the_words(client, clips, chunking):
    pairs = []
    for clip in clips:
        text = client.audio.transcriptions.create(
            file=("clip.wav", clip.wav), model="whisper-1", response_format="text", chunking_strategy=chunking
        )
        pairs.append(("".join(clip.sentences), text))
    assert _wer(pairs) <= MAX_WER, pairs


def test_stream_deltas_spell_the_heard_words(client, clips):
    pairs = []
    for clip in clips:
        events = list(
            client.audio.transcriptions.create(
                file=("clip.wav", clip.wav), model="gpt-4o-transcribe", stream=True, include=["logprobs"]
            )
        )
        deltas = [e for e in events if e.type == "transcript.text.delta"]
        done = events[-1]
        assert done.type == "transcript.text.done"
        assert "".join(d.delta for d in deltas) == done.text
        assert "".join(lp.token for lp in done.logprobs).strip() == done.text.strip()
        assert all(lp.logprob <= 0 for lp in done.logprobs)
        assert done.usage.input_tokens > 0 and done.usage.output_tokens >= len(tiny_speech.normalise(done.text))
        pairs.append(("".join(clip.sentences), done.text))
    assert _wer(pairs) <= MAX_WER, pairs


def test_word_timestamps_are_the_heard_words_in_their_sentences(client, clips):
    """Word times come from a 4-layer decoder's cross-attention (faster-whisper's DTW), so they
    are rough: most words, not all, must lie in the time their sentence is really spoken."""
    placed = total = 0
    for clip in clips:
        result = client.audio.transcriptions.create(
            file=("clip.wav", clip.wav),
            model="whisper-1",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
        assert tiny_speech.normalise(" ".join(w.word for w in result.words)) == tiny_speech.normalise(result.text)
        starts = [w.start for w in result.words]
        assert starts == sorted(starts)
        assert all(0 <= w.start <= w.end <= result.duration for w in result.words)
        if tiny_speech.normalise(result.text) != tiny_speech.normalise("".join(clip.sentences)):
            continue  # a misheard word would shift which sentence the later words belong to
        words = iter(result.words)
        for sentence, (start, end) in zip(clip.sentences, clip.spans):
            for _ in tiny_speech.normalise(sentence):
                word = next(words)
                placed += start - MAX_TIME_ERROR <= word.start and word.end <= end + MAX_TIME_ERROR
                total += 1
    assert total >= 20 and placed / total >= MIN_WORDS_PLACED, (placed, total)


def test_translation_hears_the_same_english_words(client, clips):
    pairs = []
    for clip in clips:
        result = client.audio.translations.create(file=("clip.wav", clip.wav), model="whisper-1")
        pairs.append(("".join(clip.sentences), result.text))
    # Trained on `<|translate|>` only briefly (polishing): measured 15.6 %, mostly one clip that
    # loses its second sentence.
    assert _wer(pairs) <= 0.2, pairs


def test_diarized_segments_carry_the_heard_words(client, clips):
    """The diarization model has random weights (tests build it), so who speaks is arbitrary; the
    words, and where they are, are not."""
    pairs = []
    for clip in clips:
        result = client.audio.transcriptions.create(
            file=("clip.wav", clip.wav), model="gpt-4o-transcribe-diarize", response_format="diarized_json"
        )
        # (times come from the word alignment here, which is rough: see the word test)
        assert all(0 <= s.start <= s.end <= clip.spans[-1][1] + MAX_TIME_ERROR for s in result.segments)
        # `text` is the speaker-labelled transcript, one "<speaker>: <words>" line per turn
        speakers = {s.speaker for s in result.segments}
        assert all(line.split(":")[0] in speakers for line in result.text.splitlines())
        pairs.append(("".join(clip.sentences), " ".join(s.text for s in result.segments)))
    assert _wer(pairs) <= MAX_WER, pairs


def test_silence_gives_no_words(client):
    noise = (np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE) * 0.003).astype(np.float32)
    result = client.audio.transcriptions.create(file=("quiet.wav", encode(noise)), model="whisper-1")
    assert tiny_speech.normalise(result.text) == []
