"""Request and response models of OpenAI's audio API, fields in the order of OpenAI's reference.

Every rule a request must satisfy lives here: field constraints on the models, and the per-model
rules (from the registry, passed as validation context) in `_model_rules`. Routes only parse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.errors import APIError
from engines.base import Chunking, TranscribeOptions
from engines.languages import LANGUAGES
from engines.registry import ModelEntry, Registry

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json", "diarized_json"]
TranslationFormat = Literal["json", "text", "srt", "verbose_json", "vtt"]
LIST_FIELDS = frozenset(
    {"include", "keywords", "known_speaker_names", "known_speaker_references", "languages", "timestamp_granularities"}
)
MAX_KNOWN_SPEAKERS = 4
# OpenAI states no bounds. Whisper reads at most 223 tokens of hotwords, so more words than this
# could never all reach the model.
MAX_KEYWORDS = 100
MAX_KEYWORD_CHARS = 100
MAX_VAD_MS = 3_600_000


@dataclass
class AudioUpload:
    """The uploaded `file` part; `file` is a spooled temporary file owned by the request."""

    filename: str | None
    content_type: str | None
    file: IO[bytes]
    size: int


def _as_upload(value: Any) -> AudioUpload:
    if isinstance(value, AudioUpload):
        return value
    raise PydanticCustomError(
        "invalid_type", "Invalid type for 'file': expected a file upload (a multipart part with a filename)."
    )


def _blank_to_none(value: Any) -> Any:
    # Form encoders send empty strings for unset optional fields.
    return None if value == "" else value


def _language(value: Any) -> Any:
    value = _blank_to_none(value)
    if value is None:
        return None
    if not isinstance(value, str) or value.lower() not in LANGUAGES:
        raise PydanticCustomError(
            "invalid_value",
            "Invalid language {value}. Language parameter must be specified in ISO-639-1 format.",
            {"value": _shown(value)},
        )
    return value.lower()


def _keyword(value: Any) -> Any:
    if not isinstance(value, str):
        return value  # pydantic's own type error names the field
    text = " ".join(value.split())
    if not text or len(text) > MAX_KEYWORD_CHARS:
        raise PydanticCustomError(
            "invalid_value",
            "Invalid 'keywords': each keyword must be 1 to {limit} characters of text, got {value}.",
            {"limit": MAX_KEYWORD_CHARS, "value": _shown(value)},
        )
    return text


def _language_code(value: Any) -> Any:
    if not isinstance(value, str) or value.strip().lower() not in LANGUAGES:
        raise PydanticCustomError(
            "invalid_value",
            "Invalid 'languages': {value} is not a language code. Languages must be specified in ISO-639-1 format.",
            {"value": _shown(value)},
        )
    return value.strip().lower()


Upload = Annotated[AudioUpload, BeforeValidator(_as_upload), WithJsonSchema({"type": "string", "format": "binary"})]
Prompt = Annotated[str | None, BeforeValidator(_blank_to_none)]
Language = Annotated[str | None, BeforeValidator(_language)]
Keyword = Annotated[str, BeforeValidator(_keyword)]
LanguageCode = Annotated[str, BeforeValidator(_language_code)]
Temperature = Annotated[float, Field(ge=0, le=1)]


class ServerVad(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["server_vad"]
    # Bounded so that the VAD's sample arithmetic stays in range (10**400 ms overflowed a float).
    prefix_padding_ms: int = Field(300, ge=0, le=MAX_VAD_MS)
    silence_duration_ms: int = Field(200, ge=0, le=MAX_VAD_MS)
    threshold: float = Field(0.5, ge=0, le=1)


class _AudioRequest(BaseModel):
    # Unknown form fields are ignored (OpenAI's spec forbids them, but SDKs add fields over time).
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="ignore")

    _entry: ModelEntry | None = PrivateAttr(None)

    @property
    def entry(self) -> ModelEntry:
        assert self._entry is not None, "validated without a registry"
        return self._entry

    def _resolve(self, info: ValidationInfo) -> ModelEntry:
        registry: Registry | None = (info.context or {}).get("registry")
        entry = registry.get(self.model) if registry is not None else None
        if entry is None:
            raise APIError("invalid model ID", param="model", code="model_not_found")
        self._entry = entry
        return entry

    def _check_format(self, entry: ModelEntry, response_format: str) -> None:
        if response_format not in entry.rules.response_formats:
            allowed = " or ".join(f"'{f}'" for f in sorted(entry.rules.response_formats))
            raise APIError(
                f"response_format '{response_format}' is not compatible with model '{self.model}'. Use {allowed} instead.",
                param="response_format",
                code="unsupported_value",
            )


class TranscriptionRequest(_AudioRequest):
    file: Upload
    model: str
    chunking_strategy: Literal["auto"] | ServerVad | None = None
    include: list[Literal["logprobs"]] = []
    keywords: list[Keyword] = Field([], max_length=MAX_KEYWORDS)
    known_speaker_names: list[str] = Field([], max_length=MAX_KNOWN_SPEAKERS)
    known_speaker_references: list[str] = Field([], max_length=MAX_KNOWN_SPEAKERS)
    language: Language = None
    languages: list[LanguageCode] = Field([], max_length=len(LANGUAGES))
    prompt: Prompt = None
    response_format: ResponseFormat = "json"
    stream: bool = False
    temperature: Temperature = 0.0
    timestamp_granularities: list[Literal["word", "segment"]] = []

    @field_validator("chunking_strategy", mode="before")
    @classmethod
    def _chunking(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        if isinstance(value, str):
            text = value.strip()
            if text == "auto":
                return "auto"
            if text.startswith("{"):
                try:
                    value = json.loads(text)
                except (ValueError, RecursionError):  # broken, or nested deeper than the decoder recurses
                    raise PydanticCustomError("invalid_value", "Invalid 'chunking_strategy': not valid JSON.") from None
            else:
                raise PydanticCustomError(
                    "invalid_value",
                    "Invalid value for 'chunking_strategy': expected 'auto' or an object with type 'server_vad'.",
                )
        if isinstance(value, dict):
            try:
                return ServerVad.model_validate(value)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err["loc"]) or "type"
                raise PydanticCustomError(
                    "invalid_value", "Invalid 'chunking_strategy.{where}': {msg}.", {"where": where, "msg": err["msg"]}
                ) from None
        return value

    @field_validator("known_speaker_references")
    @classmethod
    def _data_urls(cls, refs: list[str]) -> list[str]:
        for ref in refs:
            if not (ref.startswith("data:audio/") and ";base64," in ref):
                raise PydanticCustomError(
                    "invalid_value",
                    "Invalid 'known_speaker_references': each reference must be a data URL "
                    "like 'data:audio/wav;base64,...'.",
                )
        return refs

    @model_validator(mode="after")
    def _model_rules(self, info: ValidationInfo) -> TranscriptionRequest:
        entry = self._resolve(info)
        rules = entry.rules
        self._check_format(entry, self.response_format)
        if len(self.known_speaker_names) != len(self.known_speaker_references):
            raise APIError(
                "known_speaker_names and known_speaker_references must have the same number of entries.",
                param="known_speaker_names",
                code="invalid_value",
            )
        names = [name.strip() for name in self.known_speaker_names]
        if not all(names) or len(set(names)) != len(names):
            raise APIError(
                "known_speaker_names must be non-empty and unique.", param="known_speaker_names", code="invalid_value"
            )
        if self.response_format == "diarized_json" and entry.diarization_model is None:
            raise APIError(
                f"response_format 'diarized_json' needs a speaker-diarization model, and none is configured for "
                f"model '{self.model}' on this server (EARSHOT_DIARIZATION_MODEL).",
                param="response_format",
                code="unsupported_value",
            )
        if self.timestamp_granularities and rules.granularities_need_verbose_json and self.response_format != "verbose_json":
            raise APIError(
                "timestamp_granularities is only supported with response_format 'verbose_json'.",
                param="timestamp_granularities",
                code="unsupported_value",
            )
        if self.include:
            if not rules.logprobs:
                raise APIError(
                    f"include[]=logprobs is not supported with model '{self.model}'.",
                    param="include",
                    code="unsupported_value",
                )
            if self.response_format != "json" and not self.streams:
                raise APIError(
                    "logprobs are only returned with response_format 'json' or with stream=true.",
                    param="include",
                    code="unsupported_value",
                )
        if self.prompt is not None and not rules.prompt:
            raise APIError(f"prompt is not supported with model '{self.model}'.", param="prompt", code="unsupported_value")
        for name in ("keywords", "languages"):
            if getattr(self, name) and not getattr(rules, name):
                raise APIError(
                    f"{name} is not supported with model '{self.model}'. Use 'gpt-transcribe' instead.",
                    param=name,
                    code="unsupported_value",
                )
        if self.language is not None and self.languages and self.language not in self.languages:
            raise APIError(
                f"language '{self.language}' is not one of languages {self.languages}.",
                param="language",
                code="invalid_value",
            )
        return self

    @property
    def streams(self) -> bool:
        """Whether the response is an event stream: only for models that stream (whisper-1 ignores it)."""
        return self.stream and self._entry is not None and self._entry.rules.stream

    @property
    def wants_logprobs(self) -> bool:
        return "logprobs" in self.include

    @property
    def reports_languages(self) -> bool:
        return self.entry.rules.languages

    @property
    def diarizes(self) -> bool:
        return self.response_format == "diarized_json"

    @property
    def known_speakers(self) -> list[tuple[str, str]]:
        """(name, data URL) pairs."""
        return [(name.strip(), ref) for name, ref in zip(self.known_speaker_names, self.known_speaker_references)]

    @property
    def granularities(self) -> frozenset[str]:
        if self.response_format != "verbose_json":
            return frozenset()
        return frozenset(self.timestamp_granularities or ["segment"])

    def transcribe_options(self) -> TranscribeOptions:
        allowed = tuple(dict.fromkeys(self.languages))
        return TranscribeOptions(
            task="transcribe",
            # One possible language is no choice: it is decoded in that language.
            language=self.language or (allowed[0] if len(allowed) == 1 else None),
            languages=allowed,
            prompt=self.prompt,
            hotwords=hotwords(self.keywords),
            temperature=self.temperature,
            # Diarized segments are split where the speaker changes between words.
            word_timestamps="word" in self.granularities or self.diarizes,
            token_logprobs=self.wants_logprobs,
            chunking=self.chunking(),
            streaming=self.streams,
        )

    def chunking(self) -> Chunking | None:
        if self.chunking_strategy is None:
            return None
        if self.chunking_strategy == "auto":
            return Chunking(normalise_loudness=True)
        vad = self.chunking_strategy
        return Chunking(
            threshold=vad.threshold,
            prefix_padding_ms=vad.prefix_padding_ms,
            silence_duration_ms=vad.silence_duration_ms,
        )


class TranslationRequest(_AudioRequest):
    file: Upload
    model: str
    prompt: Prompt = None
    response_format: TranslationFormat = "json"
    temperature: Temperature = 0.0

    @model_validator(mode="after")
    def _model_rules(self, info: ValidationInfo) -> TranslationRequest:
        entry = self._resolve(info)
        if not entry.rules.translate:
            raise APIError(
                f"Model '{self.model}' does not support translations. Use 'whisper-1' instead.",
                param="model",
                code="unsupported_value",
            )
        self._check_format(entry, self.response_format)
        return self

    @property
    def streams(self) -> bool:
        return False

    @property
    def wants_logprobs(self) -> bool:
        return False

    @property
    def reports_languages(self) -> bool:
        return False

    @property
    def granularities(self) -> frozenset[str]:
        return frozenset({"segment"}) if self.response_format == "verbose_json" else frozenset()

    def transcribe_options(self) -> TranscribeOptions:
        return TranscribeOptions(task="translate", prompt=self.prompt, temperature=self.temperature)


def hotwords(keywords: list[str]) -> str | None:
    """gpt-transcribe's `keywords` as the decoder's hotwords."""
    # As a finished sentence: a list ending mid-phrase ("…, quick brown fox") made tiny.en take it
    # for the audio's own start and skip those words (measured; README).
    return ", ".join(keywords) + "." if keywords else None


def _shown(value: Any, limit: int = 60) -> str:
    """A client's value as it may appear in a message: short, and never a Python object's repr."""
    if not isinstance(value, (str, int, float, bool, list, dict)) or value is None:
        return f"a {type(value).__name__}" if value is not None else "null"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# Error types raised by this module's own validators carry a finished message.
_OWN_ERRORS = frozenset({"invalid_type", "invalid_value"})


def _describe(err: dict) -> tuple[str, str]:
    """OpenAI-style (message, code) for a pydantic error on a top-level field."""
    param = str(err["loc"][0]) if err["loc"] else "body"
    kind = err["type"]
    ctx = err.get("ctx") or {}
    got = _shown(err.get("input"))
    if kind in _OWN_ERRORS:
        return err["msg"], kind
    if kind == "missing":
        return f"Missing required parameter: '{param}'.", "missing_required_parameter"
    if kind == "literal_error":
        return f"Invalid value: {got}. Supported values are: {ctx.get('expected')}.", "invalid_value"
    if kind in ("less_than_equal", "less_than"):
        return (
            f"Invalid '{param}': decimal above maximum value. Expected a value <= {ctx.get('le', ctx.get('lt'))}, "
            f"but got {got} instead.",
            "decimal_above_max_value",
        )
    if kind in ("greater_than_equal", "greater_than"):
        return (
            f"Invalid '{param}': decimal below minimum value. Expected a value >= {ctx.get('ge', ctx.get('gt'))}, "
            f"but got {got} instead.",
            "decimal_below_min_value",
        )
    if kind == "too_long":
        return (
            f"Invalid '{param}': array too long. Expected an array with maximum length {ctx.get('max_length')}, "
            f"but got an array with length {ctx.get('actual_length')} instead.",
            "array_above_max_length",
        )
    if kind.endswith("_parsing") or kind.endswith("_type"):
        return f"Invalid type for '{param}': {err['msg']}, but got {got}.", "invalid_type"
    return err["msg"], kind


def parse_request(model: type[_AudioRequest], fields: dict[str, Any], registry: Registry) -> _AudioRequest:
    """Validate parsed form fields; the first problem becomes an OpenAI-shaped 400."""
    try:
        return model.model_validate(fields, context={"registry": registry})
    except ValidationError as exc:
        err = exc.errors()[0]
        message, code = _describe(err)
        raise APIError(message, param=str(err["loc"][0]) if err["loc"] else None, code=code) from None
