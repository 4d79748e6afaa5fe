"""Server configuration, read from `EARSHOT_*` environment variables (and `.env`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EARSHOT_", env_file=".env", extra="ignore")

    asr_model: str | None = Field(
        None,
        description="Speech model: a local CTranslate2 Whisper directory, a name inside the model store, "
        "or a Hugging Face repo id already in the store / HF cache. Serves every OpenAI model name.",
    )
    models_dir: Path = Field(Path("models"), description="The local model store (registry.toml and model folders).")
    registry_file: Path | None = Field(
        None, description="Model registry (TOML). Default: <models_dir>/registry.toml when it exists."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where engines run; auto = CUDA when present.")
    device_index: int = Field(0, description="CUDA device index.")
    compute_type: str = Field(
        "auto", description="CTranslate2 compute type; auto = float16 on CUDA, int8 on CPU."
    )
    cpu_threads: int = Field(0, description="CTranslate2 CPU threads per model (0 = library default).")
    num_workers: int = Field(1, description="Concurrent decodes per model (CTranslate2 workers).")
    batch_size: int = Field(
        0, description="VAD chunks decoded together in one batch; 0 = per device (16 on CUDA, 4 on CPU)."
    )
    diarization_model: str | None = Field(
        None, description="pyannote speaker-diarization pipeline folder (config.yaml + sub-models) for diarized_json."
    )
    max_upload_bytes: int = Field(26_214_400, description="Largest accepted request body, in bytes (OpenAI: 25 MiB).")
    allow_downloads: bool = Field(
        False, description="Allow fetching models from the Hugging Face hub. Off: the server never goes online."
    )
    max_audio_seconds: float = Field(
        7200.0, description="Longest decoded audio accepted, in seconds (bounds memory: 16 kHz float32); longer → 400."
    )
    sse_ping_seconds: float = Field(15.0, description="Seconds between SSE keep-alive comments on idle streams.")
    host: str = Field("127.0.0.1", description="Bind address for `earshot serve`.")
    port: int = Field(8000, description="Port for `earshot serve`.")
    log_level: str = Field("info", description="Log level.")

    def resolved_registry_file(self) -> Path | None:
        if self.registry_file is not None:
            return self.registry_file
        default = self.models_dir / "registry.toml"
        return default if default.is_file() else None
