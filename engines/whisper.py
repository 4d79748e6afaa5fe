"""Speech recognition with faster-whisper (CTranslate2), on CUDA or CPU."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from engines.base import (
    SAMPLE_RATE,
    Segment,
    TokenLogprob,
    Transcription,
    TranscribeOptions,
    TranscriptionInfo,
    Word,
)

# OpenAI documents temperature 0 as "raise the temperature until the thresholds are met",
# which is faster-whisper's fallback schedule.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# faster-whisper keeps only the last max_length // 2 - 1 prompt tokens.
MAX_PROMPT_TOKENS = 223
ENCODER_POSITIONS_PER_SECOND = 50


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def pick_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


class WhisperEngine:
    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        device_index: int = 0,
        compute_type: str = "auto",
        cpu_threads: int = 0,
        num_workers: int = 1,
    ) -> None:
        from faster_whisper import WhisperModel

        self.device = pick_device(device)
        self.compute_type = pick_compute_type(compute_type, self.device)
        self.model_dir = Path(model_dir)
        self._model = WhisperModel(
            str(model_dir),
            device=self.device,
            device_index=device_index,
            compute_type=self.compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=True,
        )

    def close(self) -> None:
        self._model = None

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcription:
        # Each call works on a shallow copy whose CTranslate2 handle records alignment
        # probabilities, so concurrent requests never see each other's tokens.
        model = copy.copy(self._model)
        recorder = _AlignRecorder(self._model.model)
        model.model = recorder
        temperature = FALLBACK_TEMPERATURES if options.temperature == 0 else (options.temperature,)
        segments, info = model.transcribe(
            audio,
            language=options.language,
            task=options.task,
            temperature=list(temperature),
            initial_prompt=options.prompt or None,
            # Alignment is where CTranslate2 reports per-token probabilities, so logprobs need it too.
            word_timestamps=options.word_timestamps or options.token_logprobs,
            vad_filter=False,
        )
        duration = len(audio) / SAMPLE_RATE
        prompt_tokens = (
            min(len(model.hf_tokenizer.encode(" " + options.prompt.strip(), add_special_tokens=False).ids), MAX_PROMPT_TOKENS)
            if options.prompt and options.prompt.strip()
            else 0
        )
        out_info = TranscriptionInfo(
            language=info.language,
            language_probability=float(info.language_probability),
            duration=duration,
            audio_tokens=math.ceil(duration * ENCODER_POSITIONS_PER_SECOND),
            prompt_tokens=prompt_tokens,
        )
        return Transcription(out_info, self._segments(segments, model, recorder, options))

    def _segments(self, segments, model, recorder: "_AlignRecorder", options: TranscribeOptions) -> Iterator[Segment]:
        eot = model.hf_tokenizer.token_to_id("<|endoftext|>")
        try:
            for index, seg in enumerate(segments):
                text_tokens = [t for t in seg.tokens if t < eot]
                logprobs = None
                if options.token_logprobs:
                    probs = recorder.take(text_tokens)
                    logprobs = [
                        _token_logprob(model.hf_tokenizer, token, p) for token, p in zip(text_tokens, probs)
                    ]
                words = None
                if options.word_timestamps:
                    words = [
                        Word(w.word, round(w.start, 3), round(w.end, 3), float(w.probability)) for w in seg.words or []
                    ]
                yield Segment(
                    id=index,
                    seek=int(seg.seek),
                    start=round(float(seg.start), 3),
                    end=round(float(seg.end), 3),
                    text=seg.text,
                    tokens=list(seg.tokens),
                    temperature=float(seg.temperature or 0.0),
                    avg_logprob=float(seg.avg_logprob),
                    compression_ratio=float(seg.compression_ratio),
                    no_speech_prob=float(seg.no_speech_prob),
                    words=words,
                    logprobs=logprobs,
                )
        finally:
            # Closing faster-whisper's generator stops decoding before the next window.
            segments.close()


class _AlignRecorder:
    """Forwards to the CTranslate2 Whisper model, keeping the token probabilities `align` returns.

    faster-whisper aligns a whole 30 s window at once (all its segments' text tokens in a row), so
    the probabilities are kept as one ordered run and handed out segment by segment.
    """

    def __init__(self, model) -> None:
        self._model = model
        self._pending: list[tuple[int, float]] = []

    def __getattr__(self, name):
        return getattr(self._model, name)

    def align(self, features, start_sequence, text_tokens, *args, **kwargs):
        results = self._model.align(features, start_sequence, text_tokens, *args, **kwargs)
        for tokens, result in zip(text_tokens, results):
            self._pending.extend(zip(tokens, result.text_token_probs))
        return results

    def take(self, tokens: list[int]) -> list[float]:
        """The probabilities of `tokens`, the next segment's text tokens, from the aligned run."""
        n = len(tokens)
        pending_tokens = [t for t, _ in self._pending]
        for start in range(len(pending_tokens) - n + 1):
            if pending_tokens[start : start + n] == tokens:
                probs = [p for _, p in self._pending[start : start + n]]
                del self._pending[: start + n]
                return probs
        return []


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    # GPT-2's byte-level alphabet, which Whisper's tokenizer uses to spell raw bytes as characters.
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def token_bytes(tokenizer, token_id: int) -> bytes:
    piece = tokenizer.id_to_token(token_id) or ""
    decoder = _byte_decoder()
    return bytes(decoder[ch] for ch in piece if ch in decoder)


def _token_logprob(tokenizer, token_id: int, probability: float) -> TokenLogprob:
    raw = token_bytes(tokenizer, token_id)
    return TokenLogprob(
        token=raw.decode("utf-8", errors="replace"),
        logprob=math.log(max(float(probability), 1e-45)),
        bytes=list(raw),
    )
