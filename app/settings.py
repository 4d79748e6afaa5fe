"""Server configuration, read from `EARSHOT_*` environment variables (and `.env`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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
    cross_request_batching: bool = Field(
        True, description="Merge decoding work of concurrent requests into shared engine batches."
    )
    batch_wait_ms: float = Field(
        10.0, description="How long a decoding call waits for others to join its batch (only when others are running)."
    )
    diarization_model: str | None = Field(
        None, description="pyannote speaker-diarization pipeline folder (config.yaml + sub-models) for diarized_json."
    )
    speaker_match_threshold: float | None = Field(
        None,
        description="Cosine similarity from which a known speaker's reference names a diarized voice; "
        "default: the value for community-1's WeSpeaker ResNet34 embeddings (0.75).",
    )
    max_upload_bytes: int = Field(26_214_400, description="Largest accepted request body, in bytes (OpenAI: 25 MiB).")
    allow_downloads: bool = Field(
        False, description="Allow fetching models from the Hugging Face hub. Off: the server never goes online."
    )
    max_audio_seconds: float = Field(
        7200.0, description="Longest decoded audio accepted, in seconds (bounds memory: 16 kHz float32); longer → 400."
    )
    sse_ping_seconds: float = Field(15.0, description="Seconds between SSE keep-alive comments on idle streams.")
    body_timeout: float = Field(
        30.0, description="Seconds an upload may stall (no body bytes arriving) before it is refused with 408; 0 = no limit."
    )
    head_timeout: float = Field(
        10.0,
        description="Seconds a connection may take to send a request's headers (from its first byte, or from "
        "connecting) before it is closed, with 408 if some arrived; 0 = no limit.",
    )
    malloc_arenas: int = Field(
        2, description="glibc malloc arenas for the process (fewer: less memory kept after bursts); 0 = glibc's default."
    )
    release_idle_memory: bool = Field(
        True, description="Return freed heap memory to the OS (malloc_trim) whenever no request is open."
    )
    preload: Annotated[list[str], NoDecode] = Field(
        [], description="Model names to load at start-up (comma list); others load on first use."
    )
    model_ttl: float = Field(-1, description="Seconds a model may sit unused before it is unloaded; -1 = never.")
    max_loaded_models: int = Field(0, description="Most models resident at once, least recently used out; 0 = no limit.")
    max_concurrent: int = Field(8, description="Requests decoding at once (they share models and batches).")
    max_queue: int = Field(64, description="Requests waiting for a decoding slot; beyond it → 429 with Retry-After.")
    request_timeout: float = Field(0, description="Seconds a request may run before it is stopped; 0 = no limit.")
    realtime_max_sessions: int = Field(
        32, description="Realtime transcription sockets open at once; beyond it the upgrade is refused with 429."
    )
    realtime_max_buffer_seconds: float = Field(
        300.0,
        description="Audio a realtime session may hold undecoded: an uncommitted buffer past it refuses appends "
        "with an error event; turns waiting for the engine past it pause reading the socket.",
    )
    realtime_idle_timeout: float = Field(
        300.0, description="Seconds a realtime socket may send no event before it is closed; 0 = no limit."
    )
    realtime_piece_seconds: float = Field(
        10.0,
        description="During a long turn, decode what was said so far at the first short pause after this many "
        "seconds, so deltas arrive before the speaker stops.",
    )
    api_keys: Annotated[list[str], NoDecode] = Field(
        [], description="Accepted API keys (comma list). Set: /v1/* needs `Authorization: Bearer <key>`."
    )
    api_keys_file: Path | None = Field(None, description="File with one accepted API key per line.")
    shutdown_timeout: float = Field(30, description="On SIGTERM, seconds to let in-flight requests finish.")
    log_format: Literal["json", "text"] = Field("json", description="Log lines as JSON objects or plain text.")
    ssl_certfile: Path | None = Field(
        None, description="Serve HTTPS and wss:// with this PEM certificate (chain); needs EARSHOT_SSL_KEYFILE."
    )
    ssl_keyfile: Path | None = Field(None, description="The certificate's PEM private key.")
    host: str = Field("127.0.0.1", description="Bind address for `earshot serve`.")
    port: int = Field(8000, description="Port for `earshot serve`.")
    log_level: str = Field("info", description="Log level.")

    @field_validator("preload", "api_keys", mode="before")
    @classmethod
    def _comma_list(cls, value):
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    def accepted_keys(self) -> list[str]:
        keys = list(self.api_keys)
        if self.api_keys_file is not None:
            keys += [line.strip() for line in self.api_keys_file.read_text().splitlines() if line.strip()]
        return keys

    def resolved_registry_file(self) -> Path | None:
        if self.registry_file is not None:
            return self.registry_file
        default = self.models_dir / "registry.toml"
        return default if default.is_file() else None
