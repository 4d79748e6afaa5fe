"""Which API model names exist, which local model serves each, and the rules each name follows.

The rules mirror OpenAI's per-model behaviour (e.g. `verbose_json` only for `whisper-1`) and live
here, as data, so a deployment can relax them in `models/registry.toml` instead of patching code.
"""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Literal

ALL_FORMATS = frozenset({"json", "text", "srt", "vtt", "verbose_json", "diarized_json"})


@dataclass(frozen=True)
class ModelRules:
    response_formats: frozenset[str]
    # whisper-1: timestamp_granularities is only accepted together with verbose_json.
    granularities_need_verbose_json: bool = True
    logprobs: bool = False
    # False: `stream=true` is ignored and the ordinary response is sent (what OpenAI does for whisper-1).
    stream: bool = False
    translate: bool = False
    prompt: bool = True
    usage: Literal["duration", "tokens"] = "duration"
    # Which of OpenAI's wordings an undecodable upload gets.
    error_style: Literal["whisper", "gpt-4o"] = "whisper"
    # diarized_json (with known speakers) is served when the entry also has a diarization model.
    diarize: bool = False
    # gpt-4o-transcribe-diarize: inputs over 30 s need a chunking_strategy (OpenAI's documented rule).
    chunking_over_30s: bool = False
    # gpt-transcribe: `keywords[]` steer decoding; `languages[]` restrict language detection, and
    # the detected languages come back in `languages` (json and the stream's done event).
    keywords: bool = False
    languages: bool = False


PROFILES: dict[str, ModelRules] = {
    "whisper-1": ModelRules(
        response_formats=frozenset({"json", "text", "srt", "vtt", "verbose_json"}), translate=True
    ),
    "gpt-4o": ModelRules(
        response_formats=frozenset({"json", "text"}), logprobs=True, stream=True, usage="tokens", error_style="gpt-4o"
    ),
    # The SDKs' docs list logprobs for the gpt-4o names only; a registry entry can allow them.
    "gpt-transcribe": ModelRules(
        response_formats=frozenset({"json", "text"}),
        stream=True,
        usage="tokens",
        error_style="gpt-4o",
        keywords=True,
        languages=True,
    ),
    "gpt-4o-diarize": ModelRules(
        response_formats=frozenset({"json", "text", "diarized_json"}),
        stream=True,
        prompt=False,
        usage="tokens",
        error_style="gpt-4o",
        diarize=True,
        chunking_over_30s=True,
    ),
    # diarized_json is added (with diarize) when a diarization model is configured.
    "native": ModelRules(
        response_formats=ALL_FORMATS - {"diarized_json"},
        granularities_need_verbose_json=False,
        logprobs=True,
        stream=True,
        translate=True,
        usage="tokens",
        keywords=True,
        languages=True,
    ),
}

OPENAI_NAMES: dict[str, str] = {
    "gpt-transcribe": "gpt-transcribe",
    "whisper-1": "whisper-1",
    "gpt-4o-transcribe": "gpt-4o",
    "gpt-4o-mini-transcribe": "gpt-4o",
    "gpt-4o-mini-transcribe-2025-12-15": "gpt-4o",
    "gpt-4o-transcribe-diarize": "gpt-4o-diarize",
}


@dataclass(frozen=True)
class ModelEntry:
    id: str
    engine: str
    # What the engine loads: a directory, a store name or a hub repo id (see engines.store).
    model: str
    rules: ModelRules
    owned_by: str = "earshot"
    created: int = field(default_factory=lambda: int(time.time()))
    # The pyannote pipeline that diarizes for this name (None: diarized_json is refused).
    diarization_model: str | None = None


class RegistryError(ValueError):
    pass


class Registry:
    def __init__(self, entries: list[ModelEntry]) -> None:
        self._entries = {e.id: e for e in entries}

    def get(self, model_id: str) -> ModelEntry | None:
        return self._entries.get(model_id)

    def __iter__(self):
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def build(cls, asr_model: str | None, registry_file: Path | None, diarization_model: str | None = None) -> Registry:
        """Default routes for `asr_model` (every OpenAI name plus its native name), then the file's entries.

        With a `diarization_model`, gpt-4o-transcribe-diarize and the native names diarize
        (diarized_json); without one, diarized_json is refused for every name.
        """
        created = int(time.time())
        entries: dict[str, ModelEntry] = {}
        if asr_model:
            for name, profile in OPENAI_NAMES.items():
                entries[name] = ModelEntry(name, "whisper", asr_model, PROFILES[profile], created=created)
            native = diarizing(PROFILES["native"]) if diarization_model else PROFILES["native"]
            for name in native_names(asr_model):
                entries[name] = ModelEntry(name, "whisper", asr_model, native, created=created)
        if registry_file is not None:
            for entry in _read_registry(registry_file, asr_model, created):
                entries[entry.id] = entry
        if diarization_model:
            entries = {
                name: replace(entry, diarization_model=diarization_model) if entry.rules.diarize else entry
                for name, entry in entries.items()
            }
        return cls(list(entries.values()))


def diarizing(rules: ModelRules) -> ModelRules:
    return replace(rules, response_formats=rules.response_formats | {"diarized_json"}, diarize=True)


def native_names(model_ref: str) -> list[str]:
    """A model is also served under the name users know it by: its folder name or repo id."""
    names = [model_ref.rstrip("/")]
    base = Path(model_ref.rstrip("/")).name
    if base and base not in names:
        names.append(base)
    return [n for n in names if n not in OPENAI_NAMES]


_RULE_FIELDS = {f.name for f in fields(ModelRules)}


def _read_registry(path: Path, asr_model: str | None, created: int) -> list[ModelEntry]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"cannot read model registry {path}: {exc}") from exc
    out = []
    for name, spec in (data.get("models") or {}).items():
        if not isinstance(spec, dict):
            raise RegistryError(f"{path}: [models.{name!r}] must be a table")
        profile = spec.get("profile", OPENAI_NAMES.get(name, "native"))
        if profile not in PROFILES:
            raise RegistryError(f"{path}: model {name!r} has unknown profile {profile!r} (one of {sorted(PROFILES)})")
        overrides = {k: v for k, v in spec.items() if k in _RULE_FIELDS}
        if "response_formats" in overrides:
            unknown = set(overrides["response_formats"]) - ALL_FORMATS
            if unknown:
                raise RegistryError(f"{path}: model {name!r} lists unknown response formats {sorted(unknown)}")
            overrides["response_formats"] = frozenset(overrides["response_formats"])
        unknown_keys = set(spec) - _RULE_FIELDS - {"profile", "model", "engine", "owned_by"}
        if unknown_keys:
            raise RegistryError(f"{path}: model {name!r} has unknown keys {sorted(unknown_keys)}")
        model = spec.get("model", asr_model)
        if not model:
            raise RegistryError(f"{path}: model {name!r} names no `model` and EARSHOT_ASR_MODEL is not set")
        if not Path(model).is_absolute() and (path.parent / model).exists():
            model = str(path.parent / model)
        out.append(
            ModelEntry(
                id=name,
                engine=spec.get("engine", "whisper"),
                model=model,
                rules=replace(PROFILES[profile], **overrides),
                owned_by=spec.get("owned_by", "earshot"),
                created=created,
            )
        )
    return out
