"""Liveness, readiness (models and indexes loaded; the device) and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service.deps import RuntimeDep
from service.prometheus import CONTENT_TYPE
from service.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/livez", response_model=Health)
def livez() -> Health:
    """The process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
def readyz(runtime: RuntimeDep) -> Response:
    """200 when every collection with a model has it and its index loaded; else 503."""
    registry = runtime.registry
    states = {
        name: (
            f"serving v{s.serving.version}"
            if s.serving
            else registry.broken.get(name, "no model yet")
        )
        for name, s in list(registry.states.items())  # a snapshot: creates and deletes go on
    }
    ok = not registry.broken
    body = Health(status="ok" if ok else "degraded", device=runtime.device, collections=states)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response)
def metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text format."""
    return Response(runtime.metrics.render(), media_type=CONTENT_TYPE)
