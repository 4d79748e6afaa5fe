"""Speech recognition with faster-whisper (CTranslate2), on CUDA or CPU."""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines import vad
from engines.batching import BatchedModel, GenerateBatcher
from engines.bytelevel import unicode_to_bytes
from engines.base import (
    SAMPLE_RATE,
    Segment,
    TokenLogprob,
    Transcription,
    TranscribeOptions,
    TranscriptionInfo,
    Word,
)
from engines.features import WindowedFeatureExtractor

# OpenAI documents temperature 0 as "raise the temperature until the thresholds are met",
# which is faster-whisper's fallback schedule.
FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
# faster-whisper keeps only the last max_length // 2 - 1 prompt tokens.
MAX_PROMPT_TOKENS = 223
ENCODER_POSITIONS_PER_SECOND = 50
# VAD chunks decoded together when the batch size is 0 ("per device"); see bench/vad_batching.py.
DEFAULT_BATCH_SIZE = {"cuda": 16, "cpu": 4}
# faster-whisper's defaults for the fallback decision and the no-speech skip.
COMPRESSION_RATIO_THRESHOLD = 2.4
LOG_PROB_THRESHOLD = -1.0
NO_SPEECH_THRESHOLD = 0.6
BEAM_SIZE = 5
# A stream's first VAD chunk ends at the first pause after this much speech.
STREAM_FIRST_CHUNK_SECONDS = 5.0
BEST_OF = 5
MIN_ALIGN_FRAMES = 2
# Seconds around a doubtful segment that the VAD also listens to (see _unheard).
UNHEARD_MARGIN = 0.5
# A VAD chunk whose decode stops this far or more before its end has the rest decoded again
# (Whisper's seek rule), at most MAX_RESUMES times in a row.
MIN_RESUME_SECONDS = 1.0
MAX_RESUMES = 3
# faster-whisper's limit on a window's first timestamp; a model's `generation_config.json` may set
# its own (`max_initial_timestamp_index`, as in Hugging Face's Whisper generation config).
MAX_INITIAL_TIMESTAMP = 1.0
TIME_PRECISION = 0.02
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    import ctranslate2

    return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"


def pick_compute_type(compute_type: str, device: str) -> str:
    if compute_type != "auto":
        return compute_type
    return "float16" if device == "cuda" else "int8"


def max_initial_timestamp(model_dir: Path) -> float:
    """Seconds the first timestamp of a window may be at most, for this model."""
    try:
        config = json.loads((Path(model_dir) / "generation_config.json").read_text())
        index = config["max_initial_timestamp_index"]
    except (OSError, ValueError, KeyError, TypeError):
        return MAX_INITIAL_TIMESTAMP
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        return MAX_INITIAL_TIMESTAMP
    return index * TIME_PRECISION


def stated_start(tokens: list[int], window_start: float, start: float, end: float, timestamp_begin: int) -> float:
    """A segment's start as its first timestamp token states it.

    Whisper's splitting (faster-whisper's too) starts a window's only segment at the window start,
    although the model said where the speech starts: with 3 s of silence first, the segment would
    start at 0. Several segments in a window already start at their own timestamp, so this is the
    same rule for all segments.
    """
    if tokens and tokens[0] >= timestamp_begin:
        stated = window_start + (tokens[0] - timestamp_begin) * TIME_PRECISION
        if start <= stated < end:
            return stated
    return start


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
        batch_size: int = 0,
        cross_request_batching: bool = True,
        batch_wait_ms: float = 10.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        self.device = pick_device(device)
        self.compute_type = pick_compute_type(compute_type, self.device)
        self.model_dir = Path(model_dir)
        self.batch_size = batch_size if batch_size > 0 else DEFAULT_BATCH_SIZE.get(self.device, 4)
        self.max_initial_timestamp = max_initial_timestamp(self.model_dir)
        self._model = WhisperModel(
            str(model_dir),
            device=self.device,
            device_index=device_index,
            compute_type=self.compute_type,
            cpu_threads=cpu_threads,
            num_workers=num_workers,
            local_files_only=True,
        )
        self._batcher = None
        if cross_request_batching:
            self._batcher = GenerateBatcher(
                max_rows=self.batch_size,
                wait_seconds=batch_wait_ms / 1000,
                workers=num_workers,
                sot=self._model.hf_tokenizer.token_to_id("<|startoftranscript|>"),
                on_batch=on_batch,
            )

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()
        self._model = None

    def transcribe(self, audio: np.ndarray, options: TranscribeOptions) -> Transcription:
        # Each call works on a shallow copy whose CTranslate2 handle records alignment
        # probabilities, so concurrent requests never see each other's tokens.
        model = copy.copy(self._model)
        recorder = _AlignRecorder(BatchedModel(self._model.model, self._batcher))
        model.model = recorder
        if self._batcher is None:
            return self._start(model, recorder, audio, options)
        self._batcher.enter()
        try:
            transcription = self._start(model, recorder, audio, options)
        except BaseException:
            self._batcher.leave()
            raise
        return Transcription(transcription.info, self._counted(transcription.segments))

    def _counted(self, segments: Iterator[Segment]) -> Iterator[Segment]:
        try:
            yield from segments
        finally:
            self._batcher.leave()

    def _start(self, model, recorder: "_AlignRecorder", audio: np.ndarray, options: TranscribeOptions) -> Transcription:
        if options.chunking is not None:
            return _ChunkedDecoding(
                model, recorder, audio, options, self.batch_size, self.max_initial_timestamp
            ).start()
        # faster-whisper would compute the whole file's spectrogram up front (~14.5 x the audio).
        model.feature_extractor = WindowedFeatureExtractor(model.feature_extractor)
        temperature = FALLBACK_TEMPERATURES if options.temperature == 0 else (options.temperature,)
        language, probability = options.language, None
        if language is None and options.languages and model.model.is_multilingual:
            # faster-whisper detects on the first 30 s too, so this is its choice, restricted.
            _, _, ranked = model.detect_language(audio=audio[: model.feature_extractor.n_samples])
            language, probability = _allowed_language(ranked, options.languages)
        segments, info = model.transcribe(
            audio,
            language=language,
            task=options.task,
            temperature=list(temperature),
            initial_prompt=options.prompt or None,
            hotwords=options.hotwords or None,
            # Alignment is where CTranslate2 reports per-token probabilities, so logprobs need it too.
            word_timestamps=options.word_timestamps or options.token_logprobs,
            vad_filter=False,
            max_initial_timestamp=self.max_initial_timestamp,
        )
        if probability is None:
            probability = float(info.language_probability)
        out_info = _info(model, audio, options, info.language, probability)
        return Transcription(out_info, self._segments(segments, model, recorder, options, audio))

    def _segments(
        self, segments, model, recorder: "_AlignRecorder", options: TranscribeOptions, audio: np.ndarray
    ) -> Iterator[Segment]:
        eot = model.hf_tokenizer.token_to_id("<|endoftext|>")
        timestamp_begin = _timestamp_begin(model.hf_tokenizer)
        frame_seconds = model.feature_extractor.hop_length / SAMPLE_RATE
        duration = len(audio) / SAMPLE_RATE
        # With alignment, faster-whisper has set segment times from the words already.
        aligned = options.word_timestamps or options.token_logprobs
        index = 0
        try:
            for seg in segments:
                if _unheard(seg, audio):
                    continue
                start = seg.start
                if not aligned:
                    window_start = seg.seek * frame_seconds
                    start = stated_start(list(seg.tokens), window_start, seg.start, seg.end, timestamp_begin)
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
                    # Whisper's last timestamp may lie in the padding of the final window.
                    start=round(min(float(start), duration), 3),
                    end=round(min(float(seg.end), duration), 3),
                    text=seg.text,
                    tokens=list(seg.tokens),
                    temperature=float(seg.temperature or 0.0),
                    avg_logprob=float(seg.avg_logprob),
                    compression_ratio=float(seg.compression_ratio),
                    no_speech_prob=float(seg.no_speech_prob),
                    words=words,
                    logprobs=logprobs,
                )
                index += 1
        finally:
            # Closing faster-whisper's generator stops decoding before the next window.
            segments.close()


def _unheard(seg, audio: np.ndarray) -> bool:
    """A segment the model itself doubts is speech, in audio where the VAD hears none.

    Whisper writes something for noise, hum or near-silence ("You", ". . ."): real tiny.en did so
    on all of those test sounds, with no_speech_prob 0.92-0.96 but an average log probability
    above faster-whisper's -1 skip rule. Two detectors agreeing is the test, so speech the model
    doubts (a quiet word) stays when the VAD hears it.
    """
    if seg.no_speech_prob <= NO_SPEECH_THRESHOLD:
        return False
    span = audio[max(0, int((seg.start - UNHEARD_MARGIN) * SAMPLE_RATE)) : int((seg.end + UNHEARD_MARGIN) * SAMPLE_RATE)]
    return not vad.has_speech(span)


def _timestamp_begin(hf_tokenizer) -> int:
    """The id of `<|0.00|>`, as faster-whisper derives it.

    Systran's published `tokenizer.json` files have no timestamp tokens at all (they are implied:
    the ids after `<|notimestamps|>`), so they cannot be looked up by name.
    """
    from faster_whisper.tokenizer import Tokenizer

    return Tokenizer(hf_tokenizer, multilingual=False).timestamp_begin


def _prompt_ids(model, prompt: str | None) -> list[int]:
    """Token ids of text fed to the decoder before a window (a prompt, or hotwords)."""
    if not prompt or not prompt.strip():
        return []
    return model.hf_tokenizer.encode(" " + prompt.strip(), add_special_tokens=False).ids


def _allowed_language(ranked: list[tuple[str, float]], allowed: tuple[str, ...]) -> tuple[str, float]:
    """The most probable language (`ranked`: codes, most probable first) among `allowed` (empty:
    any), with the model's own probability for it."""
    for code, probability in ranked:
        if not allowed or code in allowed:
            return code, float(probability)
    return allowed[0], 0.0  # none of them is one the model knows: decode in the first, unsure


def _info(model, audio: np.ndarray, options: TranscribeOptions, language: str, probability: float) -> TranscriptionInfo:
    duration = len(audio) / SAMPLE_RATE
    # Text fed to the decoder: the prompt, and the hotwords before every window (each capped as
    # faster-whisper caps them).
    return TranscriptionInfo(
        language=language,
        language_probability=probability,
        duration=duration,
        audio_tokens=math.ceil(duration * ENCODER_POSITIONS_PER_SECOND),
        prompt_tokens=min(len(_prompt_ids(model, options.prompt)), MAX_PROMPT_TOKENS)
        + min(len(_prompt_ids(model, options.hotwords)), MAX_PROMPT_TOKENS),
    )


@dataclass
class _Encoded:
    """One batch: its features and encoder output (and, on CPU, the host array behind it)."""

    features: np.ndarray
    output: object  # ctranslate2.StorageView
    host: np.ndarray | None = None
    retry_host: np.ndarray | None = None  # keeps a retry's array alive while CTranslate2 reads it


@dataclass
class _Decoded:
    """One chunk's kept decode."""

    tokens: list[int]
    avg_logprob: float
    temperature: float
    compression_ratio: float
    no_speech_prob: float
    needs_fallback: bool = False


class _ChunkedDecoding:
    """VAD chunks decoded in batches over CTranslate2 (faster-whisper's helpers for prompts,
    timestamps and word alignment), with the same fallback rules as sequential decoding.

    Work is done batch by batch as segments are consumed: features and encoder output exist for
    one batch at a time, so memory does not grow with the length of the audio. Chunks are
    decoded independently (no previous-text conditioning; the caller's prompt goes to each), and
    every time is mapped back to the original audio through the chunk's spans.
    """

    def __init__(
        self,
        model,
        recorder: "_AlignRecorder",
        audio: np.ndarray,
        options: TranscribeOptions,
        batch_size: int,
        max_initial_timestamp: float = MAX_INITIAL_TIMESTAMP,
    ) -> None:
        self.model = model
        self.max_initial_timestamp = max_initial_timestamp
        self.recorder = recorder
        self.audio = audio
        self.options = options
        self.batch_size = batch_size
        self.temperatures = list(FALLBACK_TEMPERATURES if options.temperature == 0 else (options.temperature,))
        # Alignment gives word times and per-token probabilities (logprobs) alike.
        self.needs_alignment = options.word_timestamps or options.token_logprobs

    def start(self) -> Transcription:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        model, options = self.model, self.options
        # A stream's first chunk is short and decoded alone, so its words go out early.
        first_size = 1 if options.streaming else self.batch_size
        first_seconds = STREAM_FIRST_CHUNK_SECONDS if options.streaming else None
        plan = vad.plan_chunks(self.audio, options.chunking, first_chunk_seconds=first_seconds)
        batches = _batched(plan, self.batch_size, first_size)
        first = next(batches, None)
        encoded = None
        language, probability = options.language, 1.0
        if first is not None:
            encoded = self._encode(first)
        if not model.model.is_multilingual:
            language = "en"
        elif language is None and encoded is not None:
            # Detected on the first chunk, i.e. on speech rather than on leading silence.
            ranked = [(token[2:-2], p) for token, p in model.model.detect_language(encoded.output)[0]]
            language, probability = _allowed_language(ranked, options.languages)
        elif language is None:
            language = "en"  # no speech found: nothing will be decoded
        self.tokenizer = Tokenizer(
            model.hf_tokenizer, model.model.is_multilingual, task=options.task, language=language
        )
        self.suppress = list(get_suppressed_tokens(self.tokenizer, [-1]))
        self.prompt = model.get_prompt(
            self.tokenizer, _prompt_ids(model, options.prompt), without_timestamps=False, hotwords=options.hotwords
        )
        info = _info(model, self.audio, options, language, float(probability))
        if first is None:
            return Transcription(info, _no_segments())
        return Transcription(info, self._segments(itertools.chain([(first, encoded)], ((b, None) for b in batches))))

    def _encode(self, chunks: list[vad.Chunk]) -> _Encoded:
        import ctranslate2
        from faster_whisper.audio import pad_or_trim

        extract = self.model.feature_extractor
        features = np.stack([pad_or_trim(extract(c.samples(self.audio))[..., :-1]) for c in chunks])
        ct2 = self.model.model
        # numpy has no bfloat16, so such outputs cannot be joined on the host.
        if ct2.device != "cpu" or "bfloat16" in ct2.compute_type:
            return _Encoded(features, self.model.encode(features))
        # On CPU the encoder's matrices are large already: a batch only adds cache misses (about a
        # quarter more CPU time at 8 chunks), so chunks are encoded one by one and the outputs
        # joined for the batched decoder, where batching does pay.
        outputs = np.concatenate([np.asarray(self.model.encode(f)) for f in features])
        return _Encoded(features, ctranslate2.StorageView.from_array(outputs), outputs)

    def _subset(self, encoded: _Encoded, rows: list[int]):
        """The encoder output of some chunks of a batch."""
        if len(rows) == len(encoded.features):
            return encoded.output
        if encoded.host is not None:
            import ctranslate2

            encoded.retry_host = np.ascontiguousarray(encoded.host[rows])
            return ctranslate2.StorageView.from_array(encoded.retry_host)
        # A device tensor cannot be sliced without another array library; retries are rare, so
        # the failing chunks are encoded again.
        return self.model.encode(encoded.features[rows])

    def _segments(self, batches: Iterable[tuple[list[vad.Chunk], _Encoded | None]]) -> Iterator[Segment]:
        index = 0
        for chunks, encoded in batches:
            for recognised in self._recognise(chunks, encoded, MAX_RESUMES):
                for chunk, seg, result in recognised:
                    yield self._segment(index, chunk, seg, result)
                    index += 1

    def _recognise(self, chunks: list[vad.Chunk], encoded: _Encoded | None, resumes: int) -> list[list[tuple]]:
        """Per chunk, its (chunk, segment, decode) triples in time order.

        Whisper stops before speech it hears as cut off at the end of its window (it was trained
        on 30 s windows that cut sentences), and says so: its last timestamp pair lies before the
        window's end. Sequential decoding seeks to that timestamp and decodes the rest in the next
        window; a VAD chunk has no next window, so the rest of each such chunk is decoded again
        as a chunk of its own, batched with the other chunks' rests. Without this a chunk cut at a
        pause inside a sentence lost that sentence's end (measured: 7 % WER against 1.5 %
        sequential on the 5-minute test recording with tiny.en).
        """
        encoded = encoded or self._encode(chunks)
        decoded = self._decode(chunks, encoded)
        results, rests = [], []
        for chunk, segments, result, consumed in self._split(chunks, decoded, encoded.output):
            results.append([(chunk, seg, result) for seg in segments])
            left = chunk.duration - consumed
            rests.append(chunk.after(consumed) if resumes > 0 and consumed > 0 and left >= MIN_RESUME_SECONDS else None)
        todo = [k for k, rest in enumerate(rests) if rest is not None]
        if todo:
            for k, more in zip(todo, self._recognise([rests[k] for k in todo], None, resumes - 1)):
                results[k] += more
        return results

    def _generate(self, encoder_output, count: int, temperature: float) -> list[_Decoded]:
        from faster_whisper.transcribe import get_compression_ratio

        if temperature > 0:
            kwargs = {
                "beam_size": 1, "num_hypotheses": BEST_OF, "sampling_topk": 0, "sampling_temperature": temperature
            }
        else:
            kwargs = {"beam_size": BEAM_SIZE, "patience": 1.0}
        results = self.model.model.generate(
            encoder_output,
            [list(self.prompt) for _ in range(count)],
            length_penalty=1.0,
            max_length=self.model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self.suppress,
            max_initial_timestamp_index=round(self.max_initial_timestamp / self.model.time_precision),
            **kwargs,
        )
        out = []
        for result in results:
            tokens = result.sequences_ids[0]
            # faster-whisper's recovery of the average log probability from the length-normalised score.
            avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
            ratio = get_compression_ratio(self.tokenizer.decode(tokens).strip())
            needs = ratio > COMPRESSION_RATIO_THRESHOLD or avg_logprob < LOG_PROB_THRESHOLD
            if result.no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOG_PROB_THRESHOLD:
                needs = False  # silence: the no-speech rule below drops it
            out.append(_Decoded(tokens, avg_logprob, temperature, ratio, result.no_speech_prob, needs))
        return out

    def _decode(self, chunks: list[vad.Chunk], encoded: _Encoded) -> list[_Decoded]:
        """Temperature fallback per chunk, as faster-whisper's sequential decoding, but batched: the
        chunks that fail at one temperature are decoded again together at the next."""
        first, rest = self.temperatures[0], self.temperatures[1:]
        attempts = [[d] for d in self._generate(encoded.output, len(chunks), first)]
        failing = [i for i, a in enumerate(attempts) if a[-1].needs_fallback]
        for temperature in rest:
            if not failing:
                break
            retry = self._subset(encoded, failing)
            for i, d in zip(failing, self._generate(retry, len(failing), temperature)):
                attempts[i].append(d)
            failing = [i for i in failing if attempts[i][-1].needs_fallback]
        kept = []
        for i, tries in enumerate(attempts):
            if i in failing and len(tries) > 1:
                # All failed: the best average log probability among the not-too-repetitive ones.
                below = [d for d in tries if d.compression_ratio <= COMPRESSION_RATIO_THRESHOLD]
                best = max(below or tries, key=lambda d: d.avg_logprob)
                kept.append(
                    _Decoded(
                        best.tokens, best.avg_logprob, tries[-1].temperature, best.compression_ratio, best.no_speech_prob
                    )
                )
            else:
                kept.append(tries[-1])
        return kept

    def _split(self, chunks: list[vad.Chunk], decoded: list[_Decoded], encoder_output):
        """Per chunk: its segments (dicts with local times), its decode, and the seconds of it that
        the decode covers."""
        model, tokenizer = self.model, self.tokenizer
        window = model.feature_extractor.chunk_length  # 30 s
        groups, consumed = [], []
        for k, (chunk, d) in enumerate(zip(chunks, decoded)):
            skip = d.no_speech_prob > NO_SPEECH_THRESHOLD and d.avg_logprob <= LOG_PROB_THRESHOLD
            # Word alignment carries state from segment to segment (the last speech time), so the
            # chunks of a batch are laid out k * 30 s apart to keep their times increasing; the
            # offset is removed again below.
            offset = k * window
            frames = math.ceil(chunk.num_samples / model.feature_extractor.hop_length)
            if skip:
                groups.append([dict(seek=round(offset * model.frames_per_second), start=offset, end=offset, tokens=[])])
                consumed.append(chunk.duration)
                continue
            segments, seek, _ = model._split_segments_by_timestamps(
                tokenizer=tokenizer,
                tokens=d.tokens,
                time_offset=offset,
                segment_size=frames,
                segment_duration=chunk.duration,
                seek=round(offset * model.frames_per_second),
            )
            groups.append(segments)
            # Where Whisper would seek to next: the chunk's audio it has transcribed.
            consumed.append(seek / model.frames_per_second - offset)
        if self.needs_alignment:
            model.add_word_timestamps(
                groups,
                tokenizer,
                encoder_output,
                [math.ceil(c.num_samples / model.feature_extractor.hop_length) for c in chunks],
                PREPEND_PUNCTUATIONS,
                APPEND_PUNCTUATIONS,
                0.0,
            )
        for k, (chunk, d, segments, covered) in enumerate(zip(chunks, decoded, groups, consumed)):
            offset = k * window
            kept = []
            for seg in segments:
                text = tokenizer.decode(seg["tokens"])
                # faster-whisper's rule: empty and zero-length segments are not output.
                if not text.strip() or seg["start"] == seg["end"]:
                    continue
                seg["text"] = text
                if not self.needs_alignment:
                    seg["start"] = stated_start(
                        seg["tokens"], offset, seg["start"], seg["end"], tokenizer.timestamp_begin
                    )
                seg["start"] -= offset
                seg["end"] -= offset
                for w in seg.get("words") or []:
                    w["start"] -= offset
                    w["end"] -= offset
                kept.append(seg)
            yield chunk, kept, d, min(covered, chunk.duration)

    def _segment(self, index: int, chunk: vad.Chunk, seg: dict, d: _Decoded) -> Segment:
        eot = self.tokenizer.eot
        text_tokens = [t for t in seg["tokens"] if t < eot]
        logprobs = None
        if self.options.token_logprobs:
            probs = self.recorder.take(text_tokens)
            logprobs = [_token_logprob(self.model.hf_tokenizer, t, p) for t, p in zip(text_tokens, probs)]
        words = None
        if self.options.word_timestamps:
            words = [
                Word(
                    w["word"],
                    round(chunk.to_original(w["start"]), 3),
                    round(chunk.to_original(w["end"], is_end=True), 3),
                    float(w["probability"]),
                )
                for w in seg.get("words") or []
            ]
        return Segment(
            id=index,
            seek=round(chunk.start / self.model.feature_extractor.hop_length),
            start=round(chunk.to_original(seg["start"]), 3),
            end=round(chunk.to_original(seg["end"], is_end=True), 3),
            text=seg["text"],
            tokens=list(seg["tokens"]),
            temperature=float(d.temperature),
            avg_logprob=float(d.avg_logprob),
            compression_ratio=float(d.compression_ratio),
            no_speech_prob=float(d.no_speech_prob),
            words=words,
            logprobs=logprobs,
        )


def _no_segments() -> Iterator[Segment]:
    yield from ()


def _batched(items: Iterable, size: int, first_size: int | None = None) -> Iterator[list]:
    iterator = iter(items)
    if first := list(itertools.islice(iterator, first_size or size)):
        yield first
    while batch := list(itertools.islice(iterator, size)):
        yield batch


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

    def align(self, features, start_sequence, text_tokens, num_frames, *args, **kwargs):
        # CTranslate2 aligns over num_frames // 2 encoder positions: audio of one mel frame (10 ms)
        # would get an empty alignment, on which faster-whisper's word split indexes out of range.
        # Two frames give one position, so such a clip's words all lie at its start.
        if isinstance(num_frames, int):
            num_frames = max(num_frames, MIN_ALIGN_FRAMES)
        else:
            num_frames = [max(n, MIN_ALIGN_FRAMES) for n in num_frames]
        results = self._model.align(features, start_sequence, text_tokens, num_frames, *args, **kwargs)
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


def token_bytes(tokenizer, token_id: int) -> bytes:
    piece = tokenizer.id_to_token(token_id) or ""
    decoder = unicode_to_bytes()
    return bytes(decoder[ch] for ch in piece if ch in decoder)


def _token_logprob(tokenizer, token_id: int, probability: float) -> TokenLogprob:
    raw = token_bytes(tokenizer, token_id)
    return TokenLogprob(
        token=raw.decode("utf-8", errors="replace"),
        logprob=math.log(max(float(probability), 1e-45)),
        bytes=list(raw),
    )
