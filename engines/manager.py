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
from engines.base import SpeechEngine

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
    allow_downloads: bool = False


@dataclass
class _Loaded:
    engine: SpeechEngine
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
    )


LOADERS: dict[str, Callable[[Path, EngineConfig], SpeechEngine]] = {"whisper": _load_whisper}


class ModelManager:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self._loaded: dict[tuple[str, str], _Loaded] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    def loaded(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._loaded)

    @contextmanager
    def use(self, engine_kind: str, model_ref: str) -> Iterator[SpeechEngine]:
        """Blocking: loads the model on first use. Run it off the event loop."""
        key = (engine_kind, model_ref)
        slot = self._acquire(key)
        try:
            yield slot.engine
        finally:
            with self._lock:
                slot.users -= 1
                slot.last_used = time.monotonic()

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
        return _Loaded(engine=engine, load_seconds=seconds)

    def close(self) -> None:
        with self._lock:
            slots, self._loaded = list(self._loaded.values()), {}
        for slot in slots:
            slot.engine.close()
