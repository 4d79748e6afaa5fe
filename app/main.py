"""The ASGI application: settings → registry → model manager → serving layer → routes."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from starlette.concurrency import run_in_threadpool

from app import logs, page
from app.admission import Admission
from app.auth import APIKeyMiddleware
from app.errors import install_error_handlers
from app.memory import ReleaseWhenIdle, limit_arenas
from app.metrics import Metrics
from app.realtime.route import SessionCount
from app.realtime.route import router as realtime_router
from app.request_ids import RequestIdMiddleware
from app.routes import router
from app.serving import TranscriptionService
from app.settings import Settings
from engines import store
from engines.manager import EngineConfig, ModelManager
from engines.registry import Registry

log = logging.getLogger("earshot")


class EarshotAPI(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's ServerErrorMiddleware, which FastAPI puts outermost: its 500s get
        # the request id as well.
        app = super().build_middleware_stack()
        if self.state.settings.release_idle_memory:
            app = ReleaseWhenIdle(app)
        return RequestIdMiddleware(app)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logs.stamp_records()
    limit_arenas(settings.malloc_arenas)
    store.offline_switches(settings.allow_downloads)
    registry = Registry.build(settings.asr_model, settings.resolved_registry_file(), settings.diarization_model)
    if not len(registry):
        log.warning("no models configured: set EARSHOT_ASR_MODEL or add models/registry.toml")
    unknown = [name for name in settings.preload if registry.get(name) is None]
    if unknown:
        raise ValueError(f"EARSHOT_PRELOAD names unknown models: {unknown}")
    metrics = Metrics()
    manager = ModelManager(
        EngineConfig(
            models_dir=settings.models_dir,
            device=settings.device,
            device_index=settings.device_index,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=settings.num_workers,
            batch_size=settings.batch_size,
            cross_request_batching=settings.cross_request_batching,
            batch_wait_ms=settings.batch_wait_ms,
            on_batch=lambda rows: metrics.batch_size.observe(rows),
            allow_downloads=settings.allow_downloads,
            speaker_match_threshold=settings.speaker_match_threshold,
        ),
        ttl=settings.model_ttl,
        max_loaded=settings.max_loaded_models,
        on_load=lambda kind, model, seconds: metrics.model_load.labels(kind, model).observe(seconds),
    )
    service = TranscriptionService(
        manager,
        admission=Admission(settings.max_concurrent, settings.max_queue),
        metrics=metrics,
        max_audio_seconds=settings.max_audio_seconds,
        request_timeout=settings.request_timeout,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        for name in settings.preload:
            entry = registry.get(name)
            await run_in_threadpool(manager.preload, entry.engine, entry.model)
        reaper = asyncio.create_task(_unload_idle_models(manager)) if manager.ttl >= 0 else None
        try:
            yield
        finally:
            if reaper is not None:
                reaper.cancel()
            manager.close()

    app = EarshotAPI(
        title="Earshot",
        version="0.1.0",
        description="OpenAI-compatible speech-to-text server.",
        lifespan=lifespan,
        # FastAPI's OpenTelemetry instrumentation: no spans, metrics or log records, and no
        # exporters configured from OTEL_* variables (engines/telemetry.py).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False,
                   "auto_configure": False},
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.manager = manager
    app.state.metrics = metrics
    app.state.service = service
    app.state.realtime_sessions = SessionCount(settings.realtime_max_sessions)
    metrics.realtime_sessions.set_function(lambda: app.state.realtime_sessions.open)
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(realtime_router)
    app.include_router(page.router)
    app.add_middleware(APIKeyMiddleware, keys=settings.accepted_keys())
    return app


async def _unload_idle_models(manager: ModelManager) -> None:
    period = min(max(manager.ttl / 4, 0.5), 30)
    while True:
        await asyncio.sleep(period)
        await run_in_threadpool(manager.unload_idle)
