"""Build wired CTranslate2 Whisper models offline, in about a second.

The models have the real Whisper architecture (conv front end, learned position tables,
pre-norm transformer encoder and decoder, Whisper's 51865- or 51866-token vocabulary and
special tokens) and load in faster-whisper as ordinary converted models.  Weights are
random where they do not matter and hand-wired where they do, so that decoding
deterministically emits a known script with known timestamps, through the real engine
(language detection, beam search, temperature fallback, timestamp rules, prompts,
multi-window seeking, word alignment):

* Decoder.  Every layer is an identity on the residual stream (self-attention output,
  cross-attention output and FFN second linear are zero) except two heads of layer 0: one
  finds the task token in the prompt and writes a "transcribe" or "translate" direction,
  the other finds <|notimestamps|> and writes a "no timestamps" direction.  Script tokens
  have orthonormal embeddings and the output projection is a bigram table on them: after
  token x the scripted next token scores 50, the other task's tokens are penalised and,
  without timestamps, so are timestamp tokens, letting a segment's last word continue with
  the next segment's first word.  CTranslate2's timestamp rules (pairs, monotonicity)
  resolve the rest, e.g. an end timestamp equal to the next start.
* Beam search (faster-whisper's default: 5 beams, length_penalty 1, so no early exit)
  stops after 5 finished hypotheses, so no alternative in the beam may finish before the
  scripted path.  Each script token therefore has a "twin" (a spare token with the same
  embedding, scored 10 below it) so alternatives substitute tokens rather than skip
  ahead; everything else scores about 0.  The scripted token's probability is ~1 - 5e-5.
* <|startoftranscript|> predicts the script's language token (language detection, and a
  <|nospeech|> probability of ~0).
* Encoder.  The position table carries a smooth "time code" in dimensions that the small
  random conv front end and layers never write to.  In the alignment heads (head 0 of each
  decoder layer in the second half) the query of each script text token points at the
  time of the token after it, so DTW word timestamps land close to the script's timing.
  The audio only perturbs what the decoder never reads: any audio gives the same output.

Typical use::

    model_dir = build_whisper_model(tmp_path / "model")          # DEFAULT_SCRIPT, TEST_DIMS
    WhisperModel(str(model_dir), device="cpu", compute_type="int8")

Limitations (the builder raises ValueError with an explanation):

* A text token may appear only once in the whole script (both tasks together).
  Timestamps may be shared between the tasks and may repeat only as "end == next start".
* Every 30 s window decodes the whole script, whatever the audio (see expected_segments).
* The script's distinct tokens must fit in d_model (about d_model - 12 of them).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.bytelevel import bytes_to_unicode

__all__ = [
    "BASE_DIMS",
    "DEFAULT_SCRIPT",
    "LANGUAGES",
    "LARGE_V3_DIMS",
    "LARGE_V3_TURBO_DIMS",
    "MEDIUM_DIMS",
    "SMALL_DIMS",
    "TEST_DIMS",
    "TINY_DIMS",
    "Script",
    "ScriptedSegment",
    "WhisperDims",
    "WhisperSpecialTokens",
    "build_tokenizer_json",
    "build_whisper_model",
    "expected_segments",
    "load_tokenizer",
    "long_script",
    "special_tokens",
    "tiktoken_encoding",
]

_HERE = Path(__file__).resolve().parent
TESTS_DIR = _HERE.parent
TIKTOKEN_FILE = TESTS_DIR / "assets" / "multilingual.tiktoken"
CACHE_DIR = TESTS_DIR / ".cache"
_TOKENIZER_BUILDER_VERSION = "1"

SAMPLE_RATE = 16000
WINDOW_SECONDS = 30.0
ENCODER_POSITIONS = 1500  # encoder frames per 30 s window
ENCODER_POSITIONS_PER_SECOND = 50
TEXT_CONTEXT = 448
TIME_PRECISION = 0.02
NUM_TIMESTAMPS = 1501  # <|0.00|> .. <|30.00|>
MAX_INITIAL_TIMESTAMP = 1.0  # faster-whisper's default max_initial_timestamp

# Whisper's language order (openai-whisper tokenizer.LANGUAGES); token ids follow it.
LANGUAGES: tuple[str, ...] = (
    "en", "zh", "de", "es", "ru", "ko", "fr", "ja", "pt", "tr", "pl", "ca", "nl", "ar",
    "sv", "it", "id", "hi", "fi", "vi", "he", "uk", "el", "ms", "cs", "ro", "da", "hu",
    "ta", "no", "th", "ur", "hr", "bg", "lt", "la", "mi", "ml", "cy", "sk", "te", "fa",
    "lv", "bn", "sr", "az", "sl", "kn", "et", "mk", "br", "eu", "is", "hy", "ne", "mn",
    "bs", "kk", "sq", "sw", "gl", "mr", "pa", "si", "km", "sn", "yo", "so", "af", "oc",
    "ka", "be", "tg", "sd", "gu", "am", "yi", "lo", "uz", "fo", "ht", "ps", "tk", "nn",
    "mt", "sa", "lb", "my", "bo", "tl", "mg", "as", "tt", "haw", "ln", "ha", "ba", "jw",
    "su", "yue",
)  # fmt: skip

_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


# --------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------


def _num_base_tokens() -> int:
    return len(_read_ranks())


@functools.lru_cache(maxsize=1)
def _read_ranks() -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in TIKTOKEN_FILE.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def special_tokens(n_vocab: int = 51865) -> list[str]:
    """Whisper's special tokens, in id order, for a multilingual vocabulary of n_vocab."""
    n_base = _num_base_tokens()
    num_languages = n_vocab - n_base - 8 - NUM_TIMESTAMPS
    if not 1 <= num_languages <= len(LANGUAGES):
        raise ValueError(f"unsupported multilingual n_vocab {n_vocab}")
    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{code}|>" for code in LANGUAGES[:num_languages]],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
        *[f"<|{i * TIME_PRECISION:.2f}|>" for i in range(NUM_TIMESTAMPS)],
    ]


def _build_tokenizer_json_text(n_vocab: int) -> str:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    ranks = _read_ranks()
    byte_encoder = bytes_to_unicode()

    def to_str(token: bytes) -> str:
        return "".join(byte_encoder[b] for b in token)

    vocab = {to_str(token): rank for token, rank in ranks.items()}
    if len(vocab) != len(ranks) or sorted(ranks.values()) != list(range(len(ranks))):
        raise ValueError(f"{TIKTOKEN_FILE} is not a dense byte-level BPE rank table")

    # Merges from ranks, the standard tiktoken -> Hugging Face conversion: a token of rank r
    # is produced by merging the split (left, right) whose parts both exist, and merges
    # are applied in rank order.
    merges: list[tuple[int, int, int]] = []
    for token, rank in ranks.items():
        if len(token) == 1:
            continue
        local = []
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                local.append((ranks[left], ranks[right], rank))
        local.sort()
        merges.extend(local)
    merges.sort(key=lambda m: m[2])
    by_rank = {rank: token for token, rank in ranks.items()}
    merge_pairs = [(to_str(by_rank[a]), to_str(by_rank[b])) for a, b, _ in merges]

    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merge_pairs, ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in special_tokens(n_vocab)]
    )
    if tokenizer.get_vocab_size(with_added_tokens=True) != n_vocab:
        raise AssertionError("tokenizer size mismatch")
    return tokenizer.to_str()


@functools.lru_cache(maxsize=4)
def _tokenizer_json_text(n_vocab: int) -> str:
    digest = hashlib.sha256(
        TIKTOKEN_FILE.read_bytes() + f"|{n_vocab}|{_TOKENIZER_BUILDER_VERSION}".encode()
    ).hexdigest()[:16]
    cached = CACHE_DIR / f"whisper-tokenizer-{n_vocab}-{digest}.json"
    try:
        return cached.read_text(encoding="utf-8")
    except OSError:
        pass
    text = _build_tokenizer_json_text(n_vocab)
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=CACHE_DIR, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, cached)
    except OSError:
        pass  # read-only checkout: fine, just slower next time
    return text


def build_tokenizer_json(dest_dir: Path, n_vocab: int = 51865) -> Path:
    """Write Whisper's multilingual tokenizer.json (n_vocab 51865, or 51866 for large-v3)."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / "tokenizer.json"
    path.write_text(_tokenizer_json_text(n_vocab), encoding="utf-8")
    return path


@functools.lru_cache(maxsize=4)
def load_tokenizer(n_vocab: int = 51865):
    """The tokenizers.Tokenizer that build_tokenizer_json writes."""
    from tokenizers import Tokenizer

    return Tokenizer.from_str(_tokenizer_json_text(n_vocab))


def tiktoken_encoding(n_vocab: int = 51865):
    """The reference tiktoken Encoding of openai-whisper (for cross-checking)."""
    import tiktoken

    ranks = _read_ranks()
    specials = {tok: len(ranks) + i for i, tok in enumerate(special_tokens(n_vocab))}
    return tiktoken.Encoding(
        name=f"whisper-multilingual-{n_vocab}",
        pat_str=_GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens=specials,
    )


@dataclass(frozen=True)
class WhisperSpecialTokens:
    """Ids of Whisper's special tokens for a multilingual vocabulary."""

    n_vocab: int = 51865

    @functools.cached_property
    def _ids(self) -> dict[str, int]:
        base = _num_base_tokens()
        return {tok: base + i for i, tok in enumerate(special_tokens(self.n_vocab))}

    @property
    def languages(self) -> tuple[str, ...]:
        return LANGUAGES[: self.num_languages]

    @property
    def num_languages(self) -> int:
        return self.n_vocab - _num_base_tokens() - 8 - NUM_TIMESTAMPS

    eot = property(lambda self: self._ids["<|endoftext|>"])
    sot = property(lambda self: self._ids["<|startoftranscript|>"])
    translate = property(lambda self: self._ids["<|translate|>"])
    transcribe = property(lambda self: self._ids["<|transcribe|>"])
    sot_lm = property(lambda self: self._ids["<|startoflm|>"])
    sot_prev = property(lambda self: self._ids["<|startofprev|>"])
    no_speech = property(lambda self: self._ids["<|nospeech|>"])
    no_timestamps = property(lambda self: self._ids["<|notimestamps|>"])
    timestamp_begin = property(lambda self: self._ids["<|notimestamps|>"] + 1)

    def language(self, code: str) -> int:
        try:
            return self._ids[f"<|{code}|>"]
        except KeyError:
            raise ValueError(f"unknown Whisper language code {code!r}") from None

    def lang_ids(self) -> list[int]:
        return [self.language(code) for code in self.languages]

    def timestamp(self, seconds: float) -> int:
        index = round(seconds / TIME_PRECISION)
        if not 0 <= index < NUM_TIMESTAMPS:
            raise ValueError(f"timestamp {seconds} outside 0..30 s")
        return self.timestamp_begin + index

    def task(self, task: str) -> int:
        return {"transcribe": self.transcribe, "translate": self.translate}[task]


@functools.lru_cache(maxsize=4)
def _non_speech_tokens(n_vocab: int) -> tuple[int, ...]:
    """faster-whisper's default suppressed tokens (suppress_tokens=[-1])."""
    from faster_whisper.tokenizer import Tokenizer

    tok = Tokenizer(load_tokenizer(n_vocab), multilingual=True, task="transcribe", language="en")
    return tok.non_speech_tokens


# --------------------------------------------------------------------------------------
# Scripts
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScriptedSegment:
    start: float
    end: float
    text: str  # as Whisper emits it, usually with a leading space: " Hello world."


@dataclass(frozen=True)
class Script:
    """What the wired model says in every 30 s window, per task."""

    transcribe: tuple[ScriptedSegment, ...]
    translate: tuple[ScriptedSegment, ...]
    language: str = "en"
    # Other than faster-whisper's 1 s: written to the model's generation_config.json, and the
    # limit the first segment's start is checked against.
    max_initial_timestamp: float = MAX_INITIAL_TIMESTAMP

    def segments(self, task: str) -> tuple[ScriptedSegment, ...]:
        return {"transcribe": self.transcribe, "translate": self.translate}[task]

    def text(self, task: str = "transcribe") -> str:
        return "".join(s.text for s in self.segments(task))


DEFAULT_SCRIPT = Script(
    transcribe=(
        ScriptedSegment(0.0, 2.0, " Hello world, this is Earshot."),
        ScriptedSegment(2.4, 4.8, " The quick brown fox jumps!"),
    ),
    translate=(ScriptedSegment(0.0, 3.0, " Translated speech sounds fine?"),),
    language="en",
)


def expected_segments(
    script: Script,
    duration: float,
    task: str = "transcribe",
    *,
    without_timestamps: bool = False,
) -> list[ScriptedSegment]:
    """Segments faster-whisper yields for `duration` seconds of audio (default options).

    The wired model ignores the audio, so every 30 s window (starting at 0, 30, 60, ...)
    decodes the same script, shifted by the window start.  The script ends with a single
    timestamp, so faster-whisper then seeks a full window.  A final partial window still
    produces the whole script (times are not clipped to the duration).  As in faster-whisper,
    a window with a single segment (no consecutive timestamp pair) starts at the window
    start rather than at the segment's start timestamp, and without timestamps a window is
    one segment spanning its content.
    """
    content_frames = round(duration * SAMPLE_RATE) // 160  # mel frames, as faster-whisper
    segments = script.segments(task)
    out: list[ScriptedSegment] = []
    seek = 0
    while seek < content_frames:
        offset = seek / 100
        if without_timestamps:
            size = min(3000, content_frames - seek)
            text = "".join(s.text for s in segments)
            if text.strip():
                out.append(ScriptedSegment(round(offset, 2), round(offset + size / 100, 2), text))
        elif len(segments) == 1:
            seg = segments[0]
            out.append(ScriptedSegment(round(offset, 2), round(offset + seg.end, 2), seg.text))
        else:
            for seg in segments:
                out.append(
                    ScriptedSegment(round(offset + seg.start, 2), round(offset + seg.end, 2), seg.text)
                )
        seek += 3000
    return out


@functools.lru_cache(maxsize=4)
def _single_token_words(n_vocab: int) -> tuple[str, ...]:
    """Plain lowercase words that Whisper encodes as one token with a leading space."""
    tok = load_tokenizer(n_vocab)
    suppressed = set(_non_speech_tokens(n_vocab))
    words = []
    for token_id in range(1000, _num_base_tokens()):
        text = tok.decode([token_id])
        if re.fullmatch(r" [a-z]{4,9}", text) and token_id not in suppressed:
            if tok.encode(text, add_special_tokens=False).ids == [token_id]:
                words.append(text[1:])
    return tuple(words)


def long_script(
    n_segments: int,
    words_per_segment: int,
    segment_seconds: float | None = None,
    *,
    gap_seconds: float = 0.0,
    translate_segments: int = 1,
    language: str = "en",
    n_vocab: int = 51865,
) -> Script:
    """A script of `n_segments` segments of distinct single-token words, within one window.

    Segment k spans [k * segment_seconds, (k + 1) * segment_seconds - gap_seconds]; with the
    default gap of 0 each end timestamp equals the next start, as real Whisper output often
    has.  segment_seconds defaults to min(3, 29 / n_segments) (rounded down to 0.02 s).
    The translate script has `translate_segments` segments of further distinct words over
    the same span.  Tokens per window (transcribe): n_segments * (words_per_segment + 2);
    e.g. long_script(10, 8) is 100 tokens, a realistic 30 s of speech.
    """
    if n_segments < 1 or words_per_segment < 1:
        raise ValueError("need at least one segment of one word")
    steps = lambda seconds: round(seconds / TIME_PRECISION)  # noqa: E731
    seg_steps = (
        min(steps(3.0), steps(29.0) // n_segments)
        if segment_seconds is None
        else _ts_index(segment_seconds, "segment_seconds")
    )
    gap_steps = _ts_index(gap_seconds, "gap_seconds")
    if seg_steps <= gap_steps or n_segments * seg_steps > NUM_TIMESTAMPS - 1:
        raise ValueError("segments must be longer than the gap and fit into one 30 s window")
    words = iter(_single_token_words(n_vocab))

    def make(count: int, length: int, gap: int) -> tuple[ScriptedSegment, ...]:
        return tuple(
            ScriptedSegment(
                round(k * length * TIME_PRECISION, 2),
                round(((k + 1) * length - gap) * TIME_PRECISION, 2),
                "".join(" " + next(words) for _ in range(words_per_segment)),
            )
            for k in range(count)
        )

    transcribe = make(n_segments, seg_steps, gap_steps)
    translate = (
        make(translate_segments, n_segments * seg_steps // translate_segments, gap_steps)
        if translate_segments
        else ()
    )
    return Script(transcribe=transcribe, translate=translate, language=language)


# --------------------------------------------------------------------------------------
# Dimensions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhisperDims:
    name: str
    n_mels: int
    d_model: int
    n_heads: int
    n_encoder_layers: int
    n_decoder_layers: int
    n_vocab: int = 51865

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_dim(self) -> int:
        return 4 * self.d_model


TEST_DIMS = WhisperDims("test", n_mels=80, d_model=128, n_heads=4, n_encoder_layers=2, n_decoder_layers=2)
TINY_DIMS = WhisperDims("tiny", n_mels=80, d_model=384, n_heads=6, n_encoder_layers=4, n_decoder_layers=4)
BASE_DIMS = WhisperDims("base", n_mels=80, d_model=512, n_heads=8, n_encoder_layers=6, n_decoder_layers=6)
SMALL_DIMS = WhisperDims("small", n_mels=80, d_model=768, n_heads=12, n_encoder_layers=12, n_decoder_layers=12)
MEDIUM_DIMS = WhisperDims("medium", n_mels=80, d_model=1024, n_heads=16, n_encoder_layers=24, n_decoder_layers=24)
LARGE_V3_DIMS = WhisperDims(
    "large-v3", n_mels=128, d_model=1280, n_heads=20, n_encoder_layers=32, n_decoder_layers=32, n_vocab=51866
)
LARGE_V3_TURBO_DIMS = WhisperDims(
    "large-v3-turbo", n_mels=128, d_model=1280, n_heads=20, n_encoder_layers=32, n_decoder_layers=4, n_vocab=51866
)


# --------------------------------------------------------------------------------------
# Wiring
# --------------------------------------------------------------------------------------

# Logit design, in units of the decoder output in timestamps mode.  Beam search (faster-
# whisper's default: beam 5, length_penalty 1, hence no early exit) stops once 5 hypotheses
# have ended, so every alternative kept in the beam must end no earlier than the scripted
# path: each chain token y has a "twin" token (same embedding, so it continues the chain
# exactly like y) scored _TWIN below y wherever y is wanted.  Alternatives therefore
# substitute tokens instead of skipping ahead, and all other tokens stay far below.
_H = 50.0  # the scripted next token
_TWIN = 10.0  # a twin of the scripted next token
_SKIP = 20.0  # segment end -> next segment's text (wins only without timestamps)
_AFTER_PAIR = 10.0  # repeated timestamp (end == next start) -> next text
_OTHER_TASK = 20.0  # penalty on tokens of the other task's chain
_NOTS_PENALTY = 40.0  # on timestamp tokens when <|notimestamps|> is in the prompt
_LANG_LOGIT = 20.0  # <|startoftranscript|> -> script language
_TAU = 1.0  # norm of the task component relative to a token embedding
_NU = 1.0  # norm of the no-timestamps component
_SELECT_SCORE = 30.0  # attention score of the layer-0 heads on their trigger token
_ALIGN_SHARPNESS = 64.0  # attention score scale of the alignment heads
_MIN_MARGIN = 6.0  # validation: chosen logit must beat every allowed alternative by this


@dataclass
class _Chain:
    task: str
    tokens: list[int]  # task token, timestamps and text, ..., <|endoftext|>
    text_tokens: list[int] = field(default_factory=list)
    text_times: list[tuple[float, float]] = field(default_factory=list)  # per text token
    nots_tokens: list[int] = field(default_factory=list)  # decoded without timestamps


@dataclass
class _Design:
    tokens: WhisperSpecialTokens
    chains: dict[str, _Chain]
    successors: dict[int, dict[int, float]]  # x -> {y: logit}
    other_task_penalty: dict[str, dict[int, float]]  # task -> {y: penalty}
    nots_penalty: dict[int, float]  # y -> added when <|notimestamps|> is in the prompt
    twins: dict[int, int]  # chain token -> its twin
    align_target: dict[int, float]  # x -> seconds its alignment-head query points at
    wired: list[int]  # tokens with their own orthonormal embedding
    max_initial_timestamp: float = MAX_INITIAL_TIMESTAMP

    def rows(self) -> dict[int, tuple[dict[int, float], dict[str, float], float]]:
        """y -> ({x: logit}, {task: penalty}, nots penalty), twins included."""
        rows: dict[int, tuple[dict[int, float], dict[str, float], float]] = {}
        targets = set(self.nots_penalty) | {
            y for d in self.successors.values() for y in d
        } | {y for d in self.other_task_penalty.values() for y in d}
        for y in targets:
            srcs = {x: d[y] for x, d in self.successors.items() if y in d}
            pens = {t: d[y] for t, d in self.other_task_penalty.items() if y in d}
            rows[y] = (srcs, pens, self.nots_penalty.get(y, 0.0))
        for y, twin in self.twins.items():
            srcs, pens, nots = rows[y]
            rows[twin] = ({x: v - _TWIN for x, v in srcs.items()}, pens, nots)
        return rows


def _ts_index(seconds: float, what: str) -> int:
    index = round(seconds / TIME_PRECISION)
    if abs(index * TIME_PRECISION - seconds) > 1e-6:
        raise ValueError(f"{what}={seconds} is not a multiple of {TIME_PRECISION} s")
    return index


def _compile_chain(task: str, segments, tok, toks: WhisperSpecialTokens, max_initial: float) -> _Chain:
    chain = _Chain(task=task, tokens=[toks.task(task)])
    prev_end = 0.0
    for i, seg in enumerate(segments):
        where = f"{task} segment {i} ({seg.text!r})"
        s_idx = _ts_index(seg.start, f"{where} start")
        e_idx = _ts_index(seg.end, f"{where} end")
        if not 0 <= s_idx < e_idx < NUM_TIMESTAMPS:
            raise ValueError(f"{where}: need 0 <= start < end <= 30")
        if i == 0 and seg.start > max_initial:
            raise ValueError(f"{where}: the first segment must start by {max_initial} s")
        if seg.start < prev_end - 1e-9:
            raise ValueError(f"{where}: starts before the previous segment ends")
        prev_end = seg.end
        ids = tok.encode(seg.text, add_special_tokens=False).ids
        if not ids or not seg.text.strip():
            raise ValueError(f"{where}: empty text")
        if tok.decode(ids) != seg.text:
            raise ValueError(f"{where}: text does not round-trip through the tokenizer")
        chain.tokens += [toks.timestamp(seg.start), *ids, toks.timestamp(seg.end)]
        # Spread the segment over its tokens by length; punctuation takes almost no time.
        weights = []
        for t in ids:
            piece = tok.decode([t]).strip()
            punct = bool(piece) and all(not c.isalnum() for c in piece)
            weights.append(0.25 if punct else max(len(piece), 1))
        edges = np.concatenate([[0.0], np.cumsum(weights)]) / sum(weights)
        for k in range(len(ids)):
            chain.text_times.append(
                (seg.start + (seg.end - seg.start) * edges[k], seg.start + (seg.end - seg.start) * edges[k + 1])
            )
        chain.text_tokens += ids
    chain.tokens.append(toks.eot)
    return chain


def _design(script: Script, n_vocab: int) -> _Design:
    from faster_whisper.transcribe import get_compression_ratio

    tok = load_tokenizer(n_vocab)
    toks = WhisperSpecialTokens(n_vocab)
    if script.language not in toks.languages:
        raise ValueError(f"language {script.language!r} is not in this vocabulary")
    chains = {
        task: _compile_chain(task, script.segments(task), tok, toks, script.max_initial_timestamp)
        for task in ("transcribe", "translate")
    }
    # A task with nothing to say decodes <|0.00|> <|endoftext|>: faster-whisper drops the
    # empty segment and seeks a full window (any other lone timestamp makes it seek only that
    # far when word_timestamps=True).  Without timestamps the first token cannot be
    # <|endoftext|> (suppress_blank), so it decodes an otherwise unused timestamp instead,
    # which is empty text too.
    empty_nots: dict[str, int] = {}
    for task in chains:
        if len(chains[task].tokens) == 2:
            chains[task].tokens.insert(1, toks.timestamp(0.0))
            empty_nots[task] = toks.timestamp(WINDOW_SECONDS - TIME_PRECISION)
        chains[task].nots_tokens = chains[task].text_tokens or [empty_nots[task]]

    # Text tokens: unique across the whole script, and not suppressed by faster-whisper.
    suppressed = set(_non_speech_tokens(n_vocab))
    seen: dict[int, str] = {}
    for task, chain in chains.items():
        for t in chain.text_tokens:
            piece = tok.decode([t])
            if t in seen:
                raise ValueError(
                    f"token {piece!r} (id {t}) appears more than once in the script "
                    f"({seen[t]} and {task}); every text token must be unique across both tasks"
                )
            seen[t] = task
            if t in suppressed or t == 220:
                raise ValueError(f"token {piece!r} (id {t}) is suppressed by faster-whisper")
        text = tok.decode(chain.text_tokens).strip()
        if text and get_compression_ratio(text) > 2.4:
            raise ValueError(f"{task} script is too repetitive (compression ratio > 2.4)")
        if len(chain.tokens) > 200:
            raise ValueError(f"{task} script is too long ({len(chain.tokens)} tokens per window)")

    ts_begin = toks.timestamp_begin
    successors: dict[int, dict[int, float]] = {}

    def want(x: int, y: int, value: float) -> None:
        d = successors.setdefault(x, {})
        d[y] = max(d.get(y, -1e9), value)

    for chain in chains.values():
        seq = chain.tokens
        for i, x in enumerate(seq[:-1]):
            y = seq[i + 1]
            repeated = x >= ts_begin and i > 0 and seq[i - 1] == x
            # "end == next start" (text <|t|> <|t|> text): after the text the pair rule masks
            # text, so <|t|> repeats; after the pair timestamps are masked, so the (lower)
            # text wins.
            want(x, y, _H - _AFTER_PAIR if repeated else _H)
            if x < toks.eot and y >= ts_begin:
                # segment end: without timestamps (all masked/penalised) continue the text
                later = [t for t in seq[i + 1 :] if t <= toks.eot]
                want(x, later[0], _H - _SKIP)
        if chain.text_tokens:
            want(toks.no_timestamps, chain.text_tokens[0], _H)
    for task, placeholder in empty_nots.items():
        want(toks.no_timestamps, placeholder, _H)
        want(placeholder, toks.eot, _H)
        other = chains["translate" if task == "transcribe" else "transcribe"]
        if toks.timestamp(0.0) in other.tokens[1:2] and other.tokens[2] != toks.eot:
            # the other task continues <|0.00|> with text: let that win there (the empty
            # task's context penalises that text, so <|endoftext|> still wins here)
            successors[toks.timestamp(0.0)][toks.eot] = _H - _TWIN
    want(toks.sot, toks.language(script.language), _LANG_LOGIT)

    members = {task: set(chain.tokens[1:]) for task, chain in chains.items()}
    for task, placeholder in empty_nots.items():
        members[task].add(placeholder)
    other_task_penalty = {
        task: {y: -_OTHER_TASK for y in members[other] - members[task]}
        for task, other in (("transcribe", "translate"), ("translate", "transcribe"))
    }

    # Twins: rarely used text tokens for text, unused timestamps (just after) for timestamps.
    chain_tokens = sorted(members["transcribe"] | members["translate"])
    taken = set(chain_tokens) | set(suppressed) | {220}
    pool = (t for t in range(_num_base_tokens() - 1, 255, -1) if t not in taken)
    twins: dict[int, int] = {}
    for y in chain_tokens:
        if y < toks.eot:
            twins[y] = next(pool)
        elif y >= ts_begin:
            for cand in [*range(y + 1, n_vocab), *range(y - 1, ts_begin - 1, -1)]:
                if cand not in taken:
                    twins[y] = cand
                    taken.add(cand)
                    break
    nots_penalty = {
        y: -_NOTS_PENALTY
        for y in [*chain_tokens, *twins.values()]
        if y >= ts_begin and y not in empty_nots.values()
    }

    # Alignment: the row of token x in the DTW matrix predicts the next text token; point
    # its query at the middle of that token (midpoints between rows become word starts).
    align_target: dict[int, float] = {}
    for chain in (chains["translate"], chains["transcribe"]):  # transcribe wins for shared
        if not chain.text_tokens:
            continue
        centers = [(a + b) / 2 for a, b in chain.text_times]
        align_target[toks.no_timestamps] = centers[0]
        for k, x in enumerate(chain.text_tokens):
            if k + 1 < len(chain.text_tokens):
                align_target[x] = centers[k + 1]
            else:
                a, b = chain.text_times[k]
                align_target[x] = b + (b - a) / 2

    wired = sorted(
        set(chain_tokens)
        | {toks.sot, toks.language(script.language), toks.no_timestamps, toks.eot}
        | {toks.transcribe, toks.translate}
    )
    design = _Design(
        tokens=toks,
        chains=chains,
        successors=successors,
        other_task_penalty=other_task_penalty,
        nots_penalty=nots_penalty,
        twins=twins,
        align_target=align_target,
        wired=wired,
        max_initial_timestamp=script.max_initial_timestamp,
    )
    _check_design(design, n_vocab)
    return design


def _check_design(design: _Design, n_vocab: int) -> None:
    """Greedy-decode the logit design under CTranslate2's rules; it must replay the chains
    with a clear margin (the network computes exactly these logits, up to quantization)."""
    toks = design.tokens
    suppressed = set(_non_speech_tokens(n_vocab)) | {
        toks.transcribe, toks.translate, toks.sot, toks.sot_prev, toks.sot_lm, toks.no_speech,
    }
    rows = design.rows()
    candidates = sorted(rows)
    ts_begin, ts_end = toks.timestamp_begin, n_vocab - 1
    nots_scale = math.sqrt((1 + _TAU**2) / (1 + _TAU**2 + _NU**2))

    def source(x: int) -> int:  # twins continue like their originals
        return next((y for y, t in design.twins.items() if t == x), x)

    def logits(x: int, task: str, nots: bool) -> dict[int, float]:
        x = source(x)
        out = {}
        for y in candidates:
            srcs, pens, nots_pen = rows[y]
            value = srcs.get(x, 0.0) + pens.get(task, 0.0) + (nots_pen if nots else 0.0)
            out[y] = value * (nots_scale if nots else 1.0)
        return out

    def pick(lg: dict[int, float], disabled, where: str) -> int:
        allowed = sorted(((v, y) for y, v in lg.items() if not disabled(y)), reverse=True)
        best_v, best = allowed[0]
        runner = max(allowed[1][0] if len(allowed) > 1 else -1e9, 0.0)  # 0: everything else
        if best_v - runner < _MIN_MARGIN:
            raise ValueError(
                f"the wired model would be ambiguous at {where} (margin {best_v - runner:.1f}); "
                "a token shared by the transcribe and translate scripts (e.g. a timestamp) "
                "is probably followed by different shared tokens in the two tasks"
            )
        return best

    for task, chain in design.chains.items():
        # timestamps mode
        seq: list[int] = []
        x = chain.tokens[0]
        expected = chain.tokens[1:-1]
        for step in range(len(expected) + 1):

            def disabled(y: int, step: int = step) -> bool:
                if y in suppressed or y == toks.no_timestamps:
                    return True
                if step == 0:
                    return (
                        y in (220, toks.eot)
                        or y < ts_begin
                        or y > ts_begin + round(design.max_initial_timestamp / TIME_PRECISION)
                    )
                last = seq[-1]
                if last >= ts_begin:
                    pen = seq[-2] if len(seq) >= 2 else last
                    if pen >= ts_begin and y >= ts_begin:
                        return True
                    if pen < ts_begin and y < toks.eot:
                        return True
                stamps = [t for t in seq if t >= ts_begin]
                return bool(stamps) and ts_begin <= y < stamps[-1]

            lg = logits(x, task, nots=False)
            if step > 0:  # "sample a timestamp if timestamps carry more mass than any text"
                text_best = max([v for y, v in lg.items() if y < ts_begin and not disabled(y)] + [0.0])
                ts_vals = [v for y, v in lg.items() if y >= ts_begin and not disabled(y)]
                others = (ts_end - ts_begin + 1) - len(ts_vals)
                ts_mass = float(np.logaddexp.reduce(ts_vals + [math.log(max(others, 1))]))
                force_ts = ts_mass > text_best
            else:
                force_ts = False
            y = pick(
                lg,
                lambda t: disabled(t) or (force_ts and t < ts_begin),
                f"{task} step {step} after token {x}",
            )
            if y == toks.eot:
                break
            seq.append(y)
            x = y
        if seq != expected:
            raise ValueError(f"wired {task} chain does not replay: {seq} != {expected}")

        # no-timestamps mode: text only (or the placeholder of an empty script)
        expected = chain.nots_tokens
        seq = []
        x = toks.no_timestamps
        for step in range(len(expected) + 1):
            y = pick(
                logits(x, task, nots=True),
                lambda t, step=step: t in suppressed or (step == 0 and t in (220, toks.eot)),
                f"{task} (without timestamps) step {step} after token {x}",
            )
            if y == toks.eot:
                break
            seq.append(y)
            x = y
        if seq != expected:
            raise ValueError(f"wired {task} chain does not replay without timestamps")


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------


def _orthonormal_complement_of_ones(d: int, rng: np.random.Generator) -> np.ndarray:
    """(d, d-1) orthonormal columns, all orthogonal to the all-ones vector."""
    m = rng.standard_normal((d, d))
    m[:, 0] = 1.0
    q, _ = np.linalg.qr(m)
    return q[:, 1:]


def _time_code(positions: np.ndarray, k: int) -> np.ndarray:
    """(len(positions), 2k) unit vectors; code(i).code(j) is a smooth bump in |i - j|."""
    period = 2.0 * ENCODER_POSITIONS
    omegas = 2 * np.pi * np.arange(1, k + 1) / period
    sigma = 3.0 / omegas[-1]
    amps = np.exp(-0.5 * (omegas * sigma) ** 2)
    amps /= amps.sum()
    phase = positions[:, None] * omegas[None, :]
    code = np.concatenate([np.cos(phase), np.sin(phase)], axis=1) * np.sqrt(np.tile(amps, 2))
    return code.astype(np.float32)


def _import_whisper_spec():
    """Import ctranslate2.specs without paying for `import torch` (about 3 s).

    ctranslate2.specs.model_spec imports torch only to recognise torch tensors.  When torch
    is not loaded yet, import the specs with torch hidden and give them a stand-in that
    resolves to the real torch once something else has imported it (no object can be a
    torch.Tensor before that), so behaviour is unchanged.
    """
    import importlib.util
    import sys
    import types

    if "ctranslate2.specs" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail
        try:
            from ctranslate2.specs import model_spec
        finally:
            del sys.modules["torch"]

        class _TorchIfLoaded(types.ModuleType):
            class _NotLoaded:
                pass

            def __getattr__(self, name):
                real = sys.modules.get("torch")
                if real is None and name == "Tensor":
                    return self._NotLoaded
                if real is None:
                    import torch as real
                return getattr(real, name)

        if importlib.util.find_spec("torch") is not None:
            model_spec.torch = _TorchIfLoaded("torch")
            model_spec.torch_is_available = True
    from ctranslate2.specs import whisper_spec

    return whisper_spec


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def build_whisper_model(
    out_dir: Path,
    script: Script = DEFAULT_SCRIPT,
    dims: WhisperDims = TEST_DIMS,
    quantization: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a wired CTranslate2 Whisper model (plus tokenizer/preprocessor configs) to out_dir.

    `quantization` is any CTranslate2 weight type ("int8", "float16", ...); None keeps
    float32.  Returns out_dir, loadable with faster_whisper.WhisperModel(str(out_dir), ...).
    """
    whisper_spec = _import_whisper_spec()
    out_dir = Path(out_dir)
    design = _design(script, dims.n_vocab)
    toks = design.tokens
    rng = np.random.default_rng(seed)

    d, h, hd, v = dims.d_model, dims.n_heads, dims.head_dim, dims.n_vocab
    if h < 2:
        raise ValueError("the wiring needs at least two decoder heads")
    n_wired = len(design.wired)
    if n_wired + 3 > d - 1 - 8:
        raise ValueError(
            f"script uses {n_wired} distinct tokens; d_model={d} fits at most {d - 12}. "
            "Use larger dims or a shorter script."
        )
    k_code = min(hd // 2, (d - 16) // 4)
    if k_code < 4:
        raise ValueError("d_model too small for the alignment time code")

    spec = whisper_spec.WhisperSpec(
        dims.n_encoder_layers, h, dims.n_decoder_layers, h
    )

    # Random weights only need to look random; drawing ~1.5e9 normals for large-v3 would
    # take most of the build, so slice windows out of one pool at random offsets.
    pool = rng.standard_normal(1 << 22, dtype=np.float32)

    def normal(*shape, std=1.0):
        size = math.prod(shape)
        out = np.empty(size, np.float32)
        done = 0
        while done < size:
            start = int(rng.integers(0, pool.size))
            n = min(size - done, pool.size - start)
            np.multiply(pool[start : start + n], np.float32(std), out=out[done : done + n])
            done += n
        return out.reshape(shape)

    def layer_norm(ln, size):
        ln.gamma = np.ones(size, dtype=np.float32)
        ln.beta = np.zeros(size, dtype=np.float32)

    def linear(lin, weight, bias=None):
        lin.weight = _f32(weight)
        lin.bias = _f32(bias if bias is not None else np.zeros(weight.shape[0], np.float32))

    # ---------------- encoder ----------------
    # Residual layout: [0:2k) = +A*code(j), [2k:4k) = -A*code(j) (mean-free, so LayerNorm's
    # mean subtraction cannot leak into keys), [4k:d) = audio-dependent (small, random).
    n_time = 4 * k_code
    amp = math.sqrt(d)
    enc = spec.encoder
    w1 = normal(d, dims.n_mels, 3, std=0.02)
    b1 = normal(d, std=0.02)
    w2 = normal(d, d, 3, std=0.5 / math.sqrt(3 * d))
    b2 = normal(d, std=0.02)
    w1[:n_time] = b1[:n_time] = w2[:n_time] = b2[:n_time] = 0.0
    enc.conv1.weight, enc.conv1.bias = _f32(w1), _f32(b1)
    enc.conv2.weight, enc.conv2.bias = _f32(w2), _f32(b2)
    code = _time_code(np.arange(ENCODER_POSITIONS, dtype=np.float64), k_code)
    pos = np.zeros((ENCODER_POSITIONS, d), np.float32)
    pos[:, : 2 * k_code] = amp * code
    pos[:, 2 * k_code : n_time] = -amp * code
    enc.position_encodings.encodings = pos
    for layer in enc.layer:
        layer_norm(layer.self_attention.layer_norm, d)
        linear(layer.self_attention.linear[0], normal(3 * d, d, std=1 / math.sqrt(d)), normal(3 * d, std=0.02))
        wo = normal(d, d, std=0.1 / math.sqrt(d))
        wo[:n_time] = 0.0
        linear(layer.self_attention.linear[1], wo)
        layer_norm(layer.ffn.layer_norm, d)
        linear(layer.ffn.linear_0, normal(dims.ffn_dim, d, std=1 / math.sqrt(d)), normal(dims.ffn_dim, std=0.02))
        w_out = normal(d, dims.ffn_dim, std=0.1 / math.sqrt(dims.ffn_dim))
        w_out[:n_time] = 0.0
        linear(layer.ffn.linear_1, w_out)
    layer_norm(enc.layer_norm, d)

    # ---------------- decoder ----------------
    basis = _orthonormal_complement_of_ones(d, rng)  # (d, d-1)
    # basis[:, 0/1]: "transcribe"/"translate" context, basis[:, 2]: "no timestamps" context
    u_ctx = {"transcribe": basis[:, 0], "translate": basis[:, 1]}
    w_nots = basis[:, 2]
    index = {t: 3 + i for i, t in enumerate(design.wired)}
    scale = math.sqrt(d)  # residual vectors have norm sqrt(d): LayerNorm's eps is negligible

    # Other tokens: random, orthogonal to the all-ones vector and to the wired directions.
    emb = normal(v, d, std=1 / math.sqrt(d))
    emb -= emb.mean(axis=1, keepdims=True)
    wired_basis = basis[:, : 3 + n_wired].astype(np.float32)
    emb -= (emb @ wired_basis) @ wired_basis.T
    for t, i in index.items():
        emb[t] = basis[:, i]
    for t, twin in design.twins.items():
        emb[twin] = basis[:, index[t]]  # a twin continues the chain like the original
    dec = spec.decoder
    dec.embeddings.weight = _f32(emb * scale)
    del emb
    dec.position_encodings.encodings = np.zeros((TEXT_CONTEXT, d), np.float32)

    q_tr, q_tl, q_nt = (basis[:, index[t]] for t in (toks.transcribe, toks.translate, toks.no_timestamps))
    inv_sqrt_d = 1 / math.sqrt(d)
    n_layers = dims.n_decoder_layers
    align_layers = list(range(n_layers // 2, n_layers))
    align_norm = math.sqrt(1 + _TAU**2 + _NU**2)
    targets = [(t, s) for t, s in design.align_target.items() if t in index]

    for li, layer in enumerate(dec.layer):
        # self-attention: random, output projection zero (identity on the residual stream)
        w_qkv = normal(3 * d, d, std=1 / math.sqrt(d))
        b_qkv = normal(3 * d, std=0.02)
        w_o = np.zeros((d, d), np.float32)
        if li == 0:
            # head 0 finds the task token and writes its context direction; head 1 finds
            # <|notimestamps|>.  Constant queries, keys = 1 on the trigger tokens only,
            # so later positions attend (almost) only to the trigger token; earlier
            # positions attend uniformly to tokens whose values are zero.
            heads = [
                (q_tr + q_tl, [(q_tr, u_ctx["transcribe"] * _TAU), (q_tl, u_ctx["translate"] * _TAU)]),
                (q_nt, [(q_nt, w_nots * _NU)]),
            ]
            for head, (key_vec, values) in enumerate(heads):
                sl = slice(head * hd, (head + 1) * hd)
                for block in range(3):
                    w_qkv[block * d + sl.start : block * d + sl.stop] = 0.0
                    b_qkv[block * d + sl.start : block * d + sl.stop] = 0.0
                b_qkv[sl.start] = _SELECT_SCORE * math.sqrt(hd)  # constant query
                w_qkv[d + sl.start] = key_vec * inv_sqrt_d  # key = 1 on the trigger token
                for j, (val_vec, direction) in enumerate(values):
                    w_qkv[2 * d + sl.start + j] = val_vec * inv_sqrt_d  # value = 1
                    w_o[:, sl.start + j] = direction * scale
        layer_norm(layer.self_attention.layer_norm, d)
        linear(layer.self_attention.linear[0], w_qkv, b_qkv)
        linear(layer.self_attention.linear[1], w_o)

        # cross-attention: random except the alignment head; output projection zero
        w_q = normal(d, d, std=1 / math.sqrt(d))
        b_q = normal(d, std=0.02)
        w_kv = normal(2 * d, d, std=1 / math.sqrt(d))
        b_kv = normal(2 * d, std=0.02)
        if li in align_layers:
            w_q[:hd] = 0.0
            b_q[:hd] = 0.0
            w_kv[:hd] = 0.0
            b_kv[:hd] = 0.0
            for t, seconds in targets:
                frame = seconds * ENCODER_POSITIONS_PER_SECOND
                c = _time_code(np.array([frame]), k_code)[0]
                w_q[: 2 * k_code] += np.outer(
                    c * _ALIGN_SHARPNESS * math.sqrt(hd) * align_norm * inv_sqrt_d,
                    basis[:, index[t]],
                )
            key_scale = 1 / math.sqrt(2 * d)
            for j in range(2 * k_code):
                w_kv[j, j] = key_scale
                w_kv[j, 2 * k_code + j] = -key_scale
        layer_norm(layer.attention.layer_norm, d)
        linear(layer.attention.linear[0], w_q, b_q)
        linear(layer.attention.linear[1], w_kv, b_kv)
        linear(layer.attention.linear[2], np.zeros((d, d), np.float32))

        layer_norm(layer.ffn.layer_norm, d)
        linear(layer.ffn.linear_0, normal(dims.ffn_dim, d, std=1 / math.sqrt(d)), normal(dims.ffn_dim, std=0.02))
        linear(layer.ffn.linear_1, np.zeros((d, dims.ffn_dim), np.float32))
    layer_norm(dec.layer_norm, d)

    # output projection: the bigram table
    main_norm = math.sqrt(1 + _TAU**2)
    proj = np.zeros((v, d), np.float32)
    coef = main_norm * inv_sqrt_d
    for y, (srcs, pens, nots_pen) in design.rows().items():
        for x, value in srcs.items():
            a_scale = 1.0 / main_norm if x == toks.sot else 1.0  # no context yet at sot
            proj[y] += basis[:, index[x]] * (value * a_scale * coef)
        for task, pen in pens.items():
            proj[y] += u_ctx[task] * (pen / _TAU * coef)
        proj[y] += w_nots * (nots_pen / _NU * coef)
    dec.projection.weight = proj

    spec.config.suppress_ids = sorted(
        set(_non_speech_tokens(v))
        | {toks.transcribe, toks.translate, toks.sot, toks.sot_prev, toks.sot_lm, toks.no_speech}
    )
    spec.config.suppress_ids_begin = [220, toks.eot]
    spec.config.lang_ids = toks.lang_ids()
    spec.config.alignment_heads = [(layer, 0) for layer in align_layers]

    tokenizer = load_tokenizer(v)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    tokens = [None] * v
    for token, i in vocab.items():
        tokens[i] = token
    spec.register_vocabulary(tokens)

    spec.validate()
    spec.optimize(quantization=quantization)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))

    build_tokenizer_json(out_dir, v)
    preprocessor = {
        "chunk_length": 30,
        "feature_extractor_type": "WhisperFeatureExtractor",
        "feature_size": dims.n_mels,
        "hop_length": 160,
        "n_fft": 400,
        "n_samples": 480000,
        "nb_max_frames": 3000,
        "padding_side": "right",
        "padding_value": 0.0,
        "processor_class": "WhisperProcessor",
        "return_attention_mask": False,
        "sampling_rate": SAMPLE_RATE,
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2) + "\n")
    if script.max_initial_timestamp != MAX_INITIAL_TIMESTAMP:
        generation = {"max_initial_timestamp_index": round(script.max_initial_timestamp / TIME_PRECISION)}
        (out_dir / "generation_config.json").write_text(json.dumps(generation) + "\n")
    return out_dir
