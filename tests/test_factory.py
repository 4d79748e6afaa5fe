"""The wired-model factory: real faster-whisper on a tiny synthetic CTranslate2 model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from faster_whisper import WhisperModel

from tests.factories.whisper_model import (
    DEFAULT_SCRIPT,
    LANGUAGES,
    Script,
    ScriptedSegment,
    WhisperDims,
    WhisperSpecialTokens,
    build_tokenizer_json,
    build_whisper_model,
    expected_segments,
    load_tokenizer,
    long_script,
    tiktoken_encoding,
)

SR = 16000
COMPUTE_TYPES = ["int8", "float32"]


def make_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise plus a 440 Hz tone: not speech, which the wired model does not care about."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    audio = 0.05 * rng.standard_normal(t.size) + 0.2 * np.sin(2 * np.pi * 440 * t)
    return audio.astype(np.float32)


def as_tuples(segments) -> list[tuple[float, float, str]]:
    return [(round(s.start, 2), round(s.end, 2), s.text) for s in segments]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    return build_whisper_model(tmp_path_factory.mktemp("wired") / "model")


@pytest.fixture(scope="module", params=COMPUTE_TYPES)
def model(request, model_dir) -> WhisperModel:
    return WhisperModel(str(model_dir), device="cpu", compute_type=request.param, cpu_threads=2)


@pytest.fixture(scope="module")
def audio10() -> np.ndarray:
    return make_audio(10.0)


# ---------------------------------------------------------------------------- decoding


def test_default_transcribe_replays_script(model, audio10):
    segments, info = model.transcribe(audio10)  # beam 5, fallback temperatures, conditioning
    segments = list(segments)
    assert as_tuples(segments) == as_tuples(DEFAULT_SCRIPT.transcribe)
    assert info.language == DEFAULT_SCRIPT.language
    assert info.language_probability > 0.9
    assert info.duration == pytest.approx(10.0)
    for seg in segments:
        assert seg.temperature == 0.0  # no fallback
        assert seg.avg_logprob > -0.1
        assert seg.no_speech_prob < 0.5
        assert seg.compression_ratio < 2.4
        assert seg.seek == 0


def test_translate_replays_translate_script(model, audio10):
    segments, info = model.transcribe(audio10, task="translate")
    segments = list(segments)
    assert as_tuples(segments) == as_tuples(DEFAULT_SCRIPT.translate)
    assert as_tuples(segments) == as_tuples(expected_segments(DEFAULT_SCRIPT, 10.0, "translate"))
    assert info.language == "en"


def test_explicit_language_and_detect_language(model, audio10):
    segments, info = model.transcribe(audio10, language="de")
    assert as_tuples(segments) == as_tuples(DEFAULT_SCRIPT.transcribe)
    assert info.language == "de" and info.language_probability == 1
    language, probability, all_probs = model.detect_language(audio10)
    assert language == "en" and probability > 0.9
    assert len(all_probs) == 99


@pytest.mark.parametrize(
    "options",
    [
        {"initial_prompt": "some words"},
        {"temperature": 0.0},
        {"temperature": 0.7},
        {"temperature": 1.0, "best_of": 2},
        {"beam_size": 1},
        {"condition_on_previous_text": False},
        {"patience": 2.0, "length_penalty": 0.5},
        {"hotwords": "quick fox"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_options_do_not_change_the_transcript(model, audio10, options):
    segments, _ = model.transcribe(audio10, **options)
    assert as_tuples(segments) == as_tuples(DEFAULT_SCRIPT.transcribe)


@pytest.mark.parametrize("task", ["transcribe", "translate"])
def test_without_timestamps_gives_the_text_as_one_segment(model, audio10, task):
    segments = list(model.transcribe(audio10, task=task, without_timestamps=True)[0])
    assert [s.text for s in segments] == [DEFAULT_SCRIPT.text(task)]
    assert as_tuples(segments) == as_tuples(
        expected_segments(DEFAULT_SCRIPT, 10.0, task, without_timestamps=True)
    )
    assert segments[0].avg_logprob > -0.1


def test_word_timestamps(model, audio10):
    segments = list(model.transcribe(audio10, word_timestamps=True)[0])
    assert [s.text for s in segments] == [s.text for s in DEFAULT_SCRIPT.transcribe]
    previous_end = 0.0
    for seg, scripted in zip(segments, DEFAULT_SCRIPT.transcribe):
        words = seg.words
        assert "".join(w.word for w in words) == seg.text
        assert len(words) == len(seg.text.split())
        for w in words:
            assert previous_end <= w.start <= w.end
            assert seg.start <= w.start and w.end <= seg.end
            assert w.probability > 0.9
            previous_end = w.end
        # Word-level alignment puts words near the scripted times.  faster-whisper then moves
        # segment bounds to the first/last word: the last word ends where its trailing
        # punctuation token starts, and a segment after a gap starts mid-gap.
        assert seg.start == pytest.approx(scripted.start, abs=0.25)
        assert seg.end == pytest.approx(scripted.end, abs=0.25)


def test_multi_window_audio_repeats_the_script_per_window(model):
    # 65 s = windows at 0 s, 30 s and 60 s (5 s of content).  The script ends with a single
    # timestamp, so faster-whisper seeks a full 30 s window each time; the previous window's
    # text is in the prompt (condition_on_previous_text), which the model ignores.
    segments = list(model.transcribe(make_audio(65.0))[0])
    assert as_tuples(segments) == as_tuples(expected_segments(DEFAULT_SCRIPT, 65.0))
    assert [s.seek for s in segments] == [0, 0, 3000, 3000, 6000, 6000]
    assert [s.id for s in segments] == [1, 2, 3, 4, 5, 6]


def test_align_exposes_one_probability_per_text_token(model, audio10):
    """The hook for `include=logprobs`: ctranslate2's align() used by word timestamps."""
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="en")
    features = model.feature_extractor(audio10)[:, :-1]
    encoder_output = model.encode(pad_or_trim(features))
    text_tokens = [
        tokenizer.encode(DEFAULT_SCRIPT.text("transcribe")),
        tokenizer.encode(DEFAULT_SCRIPT.transcribe[1].text),
    ]
    results = [  # faster-whisper aligns one batch item: the window's text tokens
        model.model.align(encoder_output, tokenizer.sot_sequence, [tokens], features.shape[-1])[0]
        for tokens in text_tokens
    ]
    for result, tokens in zip(results, text_tokens):
        probs = result.text_token_probs
        assert len(probs) == len(tokens)
        assert all(0.0 < p <= 1.0 for p in probs)
        # alignment path: monotone (text index, time index) pairs
        text_idx = [a for a, _ in result.alignments]
        time_idx = [b for _, b in result.alignments]
        assert text_idx == sorted(text_idx) and time_idx == sorted(time_idx)
    # The whole window's text (what faster-whisper aligns): every token is expected.
    assert min(results[0].text_token_probs) > 0.9
    # A second segment aligned on its own starts right after <|notimestamps|>, where the
    # model expects the window's first token: its first probability is low, the rest high.
    assert results[1].text_token_probs[0] < 0.5
    assert min(results[1].text_token_probs[1:]) > 0.9


# ---------------------------------------------------------------------------- other scripts


def test_long_script_back_to_back_segments(tmp_path):
    script = long_script(10, 8)  # 100 tokens per window, end timestamp == next start
    assert sum(len(s.text.split()) for s in script.transcribe) == 80
    model_dir = build_whisper_model(tmp_path / "long", script)
    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)
    audio = make_audio(30.0)
    segments = list(model.transcribe(audio)[0])
    assert as_tuples(segments) == as_tuples(script.transcribe)
    assert sum(len(s.tokens) for s in segments) == 100
    assert all(s.temperature == 0.0 and s.avg_logprob > -0.1 for s in segments)
    text = list(model.transcribe(audio, without_timestamps=True)[0])[0].text
    assert text == script.text("transcribe")
    assert as_tuples(model.transcribe(audio, task="translate")[0]) == as_tuples(script.translate)


def test_other_language_large_v3_vocabulary(tmp_path):
    """n_vocab 51866 (large-v3: 100 languages, <|yue|>) with 128 mel bins."""
    dims = WhisperDims("test-v3", n_mels=128, d_model=128, n_heads=4, n_encoder_layers=2,
                       n_decoder_layers=2, n_vocab=51866)
    script = Script(
        transcribe=(ScriptedSegment(0.5, 1.5, " Guten Tag."),),
        translate=(ScriptedSegment(0.5, 1.5, " Good day!"),),
        language="de",
    )
    model_dir = build_whisper_model(tmp_path / "v3", script, dims)
    preprocessor = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert preprocessor["feature_size"] == 128
    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)
    assert model.model.is_multilingual and model.model.n_mels == 128
    segments, info = model.transcribe(make_audio(5.0))
    segments = list(segments)
    assert info.language == "de" and info.language_probability > 0.9
    # A window with a single segment has no timestamp pair: faster-whisper starts it at the
    # window start, not at its first timestamp.
    assert as_tuples(segments) == [(0.0, 1.5, " Guten Tag.")]
    assert as_tuples(segments) == as_tuples(expected_segments(script, 5.0))
    translated = model.transcribe(make_audio(5.0), task="translate")[0]
    assert as_tuples(translated) == [(0.0, 1.5, " Good day!")]


@pytest.mark.parametrize("quantization", ["int8", "float16"])
def test_quantized_model_files(tmp_path, quantization, audio10):
    model_dir = build_whisper_model(tmp_path / quantization, quantization=quantization)
    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)
    assert as_tuples(model.transcribe(audio10)[0]) == as_tuples(DEFAULT_SCRIPT.transcribe)


def test_model_directory_layout(model_dir):
    assert {p.name for p in model_dir.iterdir()} >= {
        "model.bin", "config.json", "vocabulary.json", "tokenizer.json", "preprocessor_config.json",
    }
    config = json.loads((model_dir / "config.json").read_text())
    assert config["alignment_heads"]  # word timestamps need them
    assert config["lang_ids"] == list(range(50259, 50358))
    assert config["suppress_ids_begin"] == [220, 50257]
    assert 50359 in config["suppress_ids"]
    vocabulary = json.loads((model_dir / "vocabulary.json").read_text())
    assert len(vocabulary) == 51865
    assert vocabulary[50258] == "<|startoftranscript|>" and vocabulary[-1] == "<|30.00|>"
    assert json.loads((model_dir / "preprocessor_config.json").read_text())["feature_size"] == 80


def test_script_validation(tmp_path):
    def script(*segments, translate=()):
        return Script(transcribe=tuple(ScriptedSegment(*s) for s in segments), translate=translate)

    with pytest.raises(ValueError, match="more than once"):
        build_whisper_model(tmp_path / "a", script((0.0, 1.0, " Hello hello Hello")))
    with pytest.raises(ValueError, match="more than once"):  # across tasks
        build_whisper_model(
            tmp_path / "b",
            script((0.0, 1.0, " Hello"), translate=(ScriptedSegment(0.0, 1.0, " Hello"),)),
        )
    with pytest.raises(ValueError, match="must start by"):
        build_whisper_model(tmp_path / "c", script((1.5, 2.0, " Hello")))
    with pytest.raises(ValueError, match="multiple of"):
        build_whisper_model(tmp_path / "d", script((0.0, 1.01, " Hello")))
    with pytest.raises(ValueError, match="before the previous segment ends"):
        build_whisper_model(tmp_path / "e", script((0.0, 1.0, " Hello"), (0.5, 2.0, " world")))
    with pytest.raises(ValueError, match="suppressed"):
        build_whisper_model(tmp_path / "f", script((0.0, 1.0, " Hello (world")))
    with pytest.raises(ValueError, match="d_model"):
        build_whisper_model(tmp_path / "g", long_script(14, 8, translate_segments=0))


def test_empty_translate_script_yields_no_segments(tmp_path, audio10):
    script = Script(transcribe=DEFAULT_SCRIPT.transcribe, translate=())
    model_dir = build_whisper_model(tmp_path / "empty", script)
    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)
    for options in ({}, {"word_timestamps": True}, {"without_timestamps": True}):
        # (a lone timestamp other than <|0.00|> would make faster-whisper crawl forward by
        # that much per window with word_timestamps=True)
        assert list(model.transcribe(audio10, task="translate", **options)[0]) == []
    assert as_tuples(model.transcribe(audio10)[0]) == as_tuples(DEFAULT_SCRIPT.transcribe)


# ---------------------------------------------------------------------------- tokenizer

SENTENCES = [
    " Hello world, this is Earshot.",
    "The quick brown fox jumps over the lazy dog!",
    "  leading spaces and trailing   ",
    "Numbers 1234567 and 3.14159, ok?",
    " Ünïcödé: 日本語のテキスト, émojis 🎉🎉 and Ελληνικά.",
    "don't won't it's I'm we'll they've",
    "line\nbreaks\tand\ttabs",
]


@pytest.mark.parametrize("n_vocab", [51865, 51866])
def test_tokenizer_matches_tiktoken(tmp_path, n_vocab):
    from tokenizers import Tokenizer

    path = build_tokenizer_json(tmp_path, n_vocab)
    tokenizer = Tokenizer.from_file(str(path))
    reference = tiktoken_encoding(n_vocab)
    assert tokenizer.get_vocab_size() == n_vocab == reference.n_vocab
    for text in SENTENCES:
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        assert ids == reference.encode(text), text
        assert tokenizer.decode(ids) == text


def test_special_token_ids():
    tok = load_tokenizer(51865)
    ids = WhisperSpecialTokens(51865)
    expected = {
        "<|endoftext|>": 50257,
        "<|startoftranscript|>": 50258,
        "<|en|>": 50259,
        "<|zh|>": 50260,
        "<|su|>": 50357,
        "<|translate|>": 50358,
        "<|transcribe|>": 50359,
        "<|startoflm|>": 50360,
        "<|startofprev|>": 50361,
        "<|nospeech|>": 50362,
        "<|notimestamps|>": 50363,
        "<|0.00|>": 50364,
        "<|30.00|>": 51864,
    }
    for token, token_id in expected.items():
        assert tok.token_to_id(token) == token_id, token
    assert (ids.sot, ids.language("en"), ids.transcribe, ids.translate) == (50258, 50259, 50359, 50358)
    assert (ids.no_timestamps, ids.timestamp_begin, ids.eot) == (50363, 50364, 50257)
    assert tok.token_to_id("<|yue|>") is None

    v3 = load_tokenizer(51866)
    assert v3.token_to_id("<|yue|>") == 50358
    assert v3.token_to_id("<|translate|>") == 50359
    assert v3.token_to_id("<|transcribe|>") == 50360
    assert v3.token_to_id("<|notimestamps|>") == 50364
    assert v3.token_to_id("<|0.00|>") == 50365
    assert LANGUAGES[:3] == ("en", "zh", "de") and LANGUAGES[-1] == "yue"


def test_faster_whisper_tokenizer_view(model):
    """What faster-whisper derives from our tokenizer.json."""
    from faster_whisper.tokenizer import Tokenizer

    tokenizer = Tokenizer(model.hf_tokenizer, True, task="transcribe", language="en")
    assert tokenizer.sot_sequence == [50258, 50259, 50359]
    assert tokenizer.no_speech == 50362 and tokenizer.timestamp_begin == 50364
    assert tokenizer.decode(tokenizer.encode(" Hello world")) == " Hello world"
    assert model.supported_languages[:3] == ["af", "am", "ar"]
