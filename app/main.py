"""The ASGI application: settings → registry → model manager → serving layer → routes."""

from __future__ import annotations

import logging
import secrets
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import install_error_handlers
from app.routes import router
from app.serving import TranscriptionService
from app.settings import Settings
from engines import store
from engines.manager import EngineConfig, ModelManager
from engines.registry import Registry

log = logging.getLogger("earshot")


class RequestIdMiddleware:
    """Every response, errors included, carries an `x-request-id` like OpenAI's (`req_<hex>`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        await self.app(scope, receive, send_with_id)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    store.offline_switches(settings.allow_downloads)
    registry = Registry.build(settings.asr_model, settings.resolved_registry_file())
    if not len(registry):
        log.warning("no models configured: set EARSHOT_ASR_MODEL or add models/registry.toml")
    manager = ModelManager(
        EngineConfig(
            models_dir=settings.models_dir,
            device=settings.device,
            device_index=settings.device_index,
            compute_type=settings.compute_type,
            cpu_threads=settings.cpu_threads,
            num_workers=settings.num_workers,
            batch_size=settings.batch_size,
            allow_downloads=settings.allow_downloads,
        )
    )
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        manager.close()

    app = FastAPI(
        title="Earshot", version="0.1.0", description="OpenAI-compatible speech-to-text server.", lifespan=lifespan
    )
    app.state.settings = settings
    app.state.registry = registry
    app.state.manager = manager
    app.state.service = TranscriptionService(
        manager, max_audio_seconds=settings.max_audio_seconds, sse_ping_seconds=settings.sse_ping_seconds
    )
    install_error_handlers(app)
    app.include_router(router)
    app.add_middleware(RequestIdMiddleware)

    return app
