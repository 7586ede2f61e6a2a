"""The FastAPI app: ``create_app(settings)`` and the lifespan that owns models and indexes."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig

from service.backend import Backend, TrainingBackend
from service.config import Settings, get_settings
from service.errors import install_error_handlers
from service.middleware import BodyLimit, RequestMetrics
from service.prometheus import Metrics
from service.registry import IndexFactory
from service.routes import (
    admin,
    collections,
    denoise,
    encode,
    health,
    imports,
    items,
    search,
    search_get,
    ui,
    visuals,
)
from service.runtime import Runtime

log = logging.getLogger(__name__)
OTEL_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def otel_requested() -> bool:
    """Whether the environment sets OpenTelemetry up (any ``OTEL_*`` variable, as the
    exporters and ``opentelemetry-instrument`` read, or FastAPI's auto-configuration)."""
    auto = os.environ.get("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true"
    return auto or any(name.startswith("OTEL_") for name in os.environ)


def create_app(
    settings: Settings | None = None,
    backend: Backend | None = None,
    index_factory: IndexFactory | None = None,
    freeze_after_start: bool = False,
) -> FastAPI:
    """Build the app; nothing is loaded until the lifespan starts (so import stays cheap).
    ``freeze_after_start``: a server process's app (one per process) takes what start-up
    loaded out of the garbage collector's passes; apps built by the dozen in one process (tests)
    would freeze each other's garbage."""
    settings = settings or get_settings()
    backend = backend or TrainingBackend()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.runtime = Runtime.start(settings, backend, metrics, index_factory)
        if freeze_after_start:
            # What start-up loaded (torch, numba, FastAPI: some 370k objects) lives as long as
            # the process; left to the collector, each full pass walks it all, a ~200 ms stall
            # of every request in flight. Its garbage is collected first, not frozen with it.
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            await app.state.runtime.close()

    app = FastAPI(
        title="Bitseek",
        version="1.0",
        summary="Semantic hashing search: binary codes from deep autoencoders, Hamming-ball index.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc: routes/ui.py, with assets shipped in the package
        redoc_url=None,
        # requests are counted and timed by RequestMetrics; FastAPI's own OpenTelemetry hook
        # would look up three global providers on every request (unless asked for, below)
        telemetry=None if otel_requested() else OTEL_OFF,
    )

    def snapshot() -> dict[str, Any]:
        runtime: Runtime | None = getattr(app.state, "runtime", None)
        return (
            runtime.snapshot() if runtime else {"collections": {}, "device": "", "jobs_running": 0}
        )

    metrics = Metrics(snapshot)
    install_error_handlers(app)
    # Routes match in order: searches first, the hot path, which no other route shadows;
    # visuals before items: its items/{id}/image must win over items/{id:path}
    for router in (
        search.router,
        search_get.router,
        visuals.router,
        collections.router,
        imports.router,
        items.router,
        encode.router,
    ):
        app.include_router(router, prefix="/v1")
    app.include_router(denoise.router, prefix="/v1")
    app.include_router(admin.router, prefix="/v1")
    app.include_router(health.router)
    app.include_router(ui.router)
    # the last added is outermost: requests refused for their size are still counted
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


def app_factory() -> FastAPI:
    """For ``uvicorn --factory service.main:app_factory``: settings from the environment."""
    return create_app(freeze_after_start=True)
