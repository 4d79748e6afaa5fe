"""Loads engines lazily, shares one instance per model among all requests, and counts its users."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from engines import store
from engines.base import Diarizer, SpeechEngine

log = logging.getLogger("earshot.models")


@dataclass
class EngineConfig:
    models_dir: Path = Path("models")
    device: str = "auto"
    device_index: int = 0
    compute_type: str = "auto"
    cpu_threads: int = 0
    num_workers: int = 1
    batch_size: int = 0
    cross_request_batching: bool = True
    batch_wait_ms: float = 10.0
    # Told the number of rows of every engine decoding call (for metrics).
    on_batch: Callable[[int], None] | None = None
    allow_downloads: bool = False
    # None: the diarization engine's default for its embedding model.
    speaker_match_threshold: float | None = None


@dataclass
class _Loaded:
    engine: SpeechEngine | Diarizer
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)
    load_seconds: float = 0.0


def _load_whisper(model_dir: Path, config: EngineConfig) -> SpeechEngine:
    from engines.whisper import WhisperEngine

    return WhisperEngine(
        model_dir,
        device=config.device,
        device_index=config.device_index,
        compute_type=config.compute_type,
        cpu_threads=config.cpu_threads,
        num_workers=config.num_workers,
        batch_size=config.batch_size,
        cross_request_batching=config.cross_request_batching,
        batch_wait_ms=config.batch_wait_ms,
        on_batch=config.on_batch,
    )


def _load_pyannote(pipeline_dir: Path, config: EngineConfig) -> Diarizer:
    from engines.diarization import PyannoteDiarizer

    threshold = {} if config.speaker_match_threshold is None else {"match_threshold": config.speaker_match_threshold}
    return PyannoteDiarizer(pipeline_dir, device=config.device, device_index=config.device_index, **threshold)


LOADERS: dict[str, Callable[[Path, EngineConfig], SpeechEngine | Diarizer]] = {
    "whisper": _load_whisper,
    "pyannote": _load_pyannote,
}


class ModelManager:
    """Shares one engine per model among all requests.

    A model loads on first use (or at start-up via `preload`), once even when several requests
    ask for it together. It unloads after `ttl` seconds unused (negative: never) or, when more than
    `max_loaded` are resident, least recently used first; never while a request holds it.
    """

    def __init__(
        self,
        config: EngineConfig,
        *,
        ttl: float = -1,
        max_loaded: int = 0,
        on_load: Callable[[str, str, float], None] | None = None,
    ) -> None:
        self.config = config
        self.ttl = ttl
        self.max_loaded = max_loaded
        self.on_load = on_load
        self._loaded: dict[tuple[str, str], _Loaded] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    def loaded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._loaded)

    def users(self, engine_kind: str, model_ref: str) -> int:
        with self._lock:
            slot = self._loaded.get((engine_kind, model_ref))
            return slot.users if slot else 0

    def preload(self, engine_kind: str, model_ref: str) -> None:
        with self.use(engine_kind, model_ref):
            pass

    @contextmanager
    def use(self, engine_kind: str, model_ref: str) -> Iterator[SpeechEngine | Diarizer]:
        """Blocking: loads the model on first use. Run it off the event loop."""
        key = (engine_kind, model_ref)
        slot = self._acquire(key)
        try:
            yield slot.engine
        finally:
            with self._lock:
                slot.users -= 1
                slot.last_used = time.monotonic()
            self._evict_over_capacity()

    def _acquire(self, key: tuple[str, str]) -> _Loaded:
        with self._lock:
            slot = self._loaded.get(key)
            if slot is not None:
                slot.users += 1
                return slot
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        # One loader per model: requests that arrive together for a cold model wait for the same load.
        with key_lock:
            with self._lock:
                slot = self._loaded.get(key)
                if slot is not None:
                    slot.users += 1
                    return slot
            slot = self._load(key)
            with self._lock:
                slot.users += 1
                self._loaded[key] = slot
        self._evict_over_capacity()
        return slot

    def _load(self, key: tuple[str, str]) -> _Loaded:
        kind, model_ref = key
        loader = LOADERS.get(kind)
        if loader is None:
            raise store.ModelNotFound(f"No engine {kind!r} for model {model_ref!r}.")
        model_dir = store.resolve(model_ref, self.config.models_dir, self.config.allow_downloads)
        started = time.monotonic()
        engine = loader(model_dir, self.config)
        seconds = time.monotonic() - started
        log.info("loaded %s model %s from %s in %.2fs", kind, model_ref, model_dir, seconds)
        if self.on_load is not None:
            self.on_load(kind, model_ref, seconds)
        return _Loaded(engine=engine, load_seconds=seconds)

    def _unload_where(self, pick: Callable[[dict[tuple[str, str], _Loaded]], list[tuple[str, str]]]) -> list:
        with self._lock:
            keys = pick(self._loaded)
            slots = [(key, self._loaded.pop(key)) for key in keys]
        for key, slot in slots:
            log.info("unloaded %s model %s", *key)
            slot.engine.close()
        return [key for key, _ in slots]

    def _evict_over_capacity(self) -> None:
        if self.max_loaded <= 0:
            return

        def least_recently_used(loaded):
            idle = sorted((s.last_used, k) for k, s in loaded.items() if s.users == 0)
            excess = len(loaded) - self.max_loaded
            return [k for _, k in idle[: max(0, excess)]]

        self._unload_where(least_recently_used)

    def unload_idle(self, now: float | None = None) -> list[tuple[str, str]]:
        """Unload every model unused for longer than the TTL; returns what was unloaded."""
        if self.ttl < 0:
            return []
        now = time.monotonic() if now is None else now
        return self._unload_where(
            lambda loaded: [k for k, s in loaded.items() if s.users == 0 and now - s.last_used > self.ttl]
        )

    def close(self) -> None:
        self._unload_where(lambda loaded: list(loaded))
