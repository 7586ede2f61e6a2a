"""What the web page shows besides search hits, each useful on its own: a stored image (or its
thumbnail), the active model's summary, and the pictures of what the model learned."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from service.collection import CollectionState, Serving
from service.deps import RuntimeDep
from service.errors import InvalidInput
from service.insights import compute_insights, insights_path, item_tangents
from service.routes.common import CollectionPath, ItemPath
from service.runtime import Runtime
from service.schemas_web import Evaluation, Insights, ModelSummary, Tangents
from service.utf8_route import Utf8Route

router = APIRouter(prefix="/collections/{collection}", tags=["visuals"], route_class=Utf8Route)
MAX_THUMBNAIL = 1024


@router.get(
    "/items/{item_id:path}/image",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "The image as PNG."}},
)
def read_item_image(
    collection: CollectionPath,
    item_id: ItemPath,
    runtime: RuntimeDep,
    size: Annotated[
        int | None,
        Query(ge=1, le=MAX_THUMBNAIL, description="Thumbnail: at most this many pixels a side."),
    ] = None,
) -> Response:
    """A stored image as PNG (image collections), or a thumbnail of it with ``size``."""
    state, row = runtime.registry.get_item(collection, item_id)
    png = state.modality.thumbnail(state.modality.from_bytes(row.payload), size)
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-cache"})


def model_summary(state: CollectionState, serving: Serving, runtime: Runtime) -> ModelSummary:
    """The active version's summary from its metrics and the versions table."""
    metrics = serving.model.metrics
    rows = {row["version"]: row for row in runtime.store.versions(state.name)}
    row = rows.get(serving.version)
    return ModelSummary(
        collection=state.name,
        version=serving.version,
        bits=serving.model.bits,
        trained_at=row["created_at"] if row else None,
        train_seconds=_number(metrics.get("train_seconds")),
        n_train=_int(metrics.get("n_train")),
        dead_bits=[int(b) for b in metrics.get("dead_bits", []) if isinstance(b, int)],
        evaluations=evaluations(metrics),
    )


def evaluations(metrics: dict[str, Any]) -> list[Evaluation]:
    """The evaluations ``bitseek evaluate`` (or the demo build) recorded in a model's metrics."""
    out = []
    recorded = metrics.get("evaluation")
    for data, entry in (recorded if isinstance(recorded, dict) else {}).items():
        methods = entry.get("methods", {}) if isinstance(entry, dict) else {}
        model = methods.get("model")
        if not isinstance(model, dict) or "precision_at_k" not in model:
            continue
        out.append(
            Evaluation(
                data=str(data),
                k=int(model.get("k", 0)),
                precision_at_k=float(model["precision_at_k"]),
                baselines={
                    name: float(m["precision_at_k"])
                    for name, m in methods.items()
                    if name != "model" and isinstance(m, dict) and "precision_at_k" in m
                },
            )
        )
    return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int) else None


@router.get("/model", response_model=ModelSummary)
def read_model(collection: CollectionPath, runtime: RuntimeDep) -> ModelSummary:
    """The active model: version, bits, when it was trained, its evaluation figures."""
    state, serving = runtime.registry.serving(collection)
    return model_summary(state, serving, runtime)


def insights(state: CollectionState, serving: Serving, runtime: Runtime) -> dict[str, Any]:
    """The cached pictures of ``serving``'s model; computed on the first call for a version."""
    path = insights_path(runtime.registry.collection_dir(state.name), serving.version)
    return runtime.insights.get(
        path, lambda: compute_insights(state, serving, runtime.store, runtime.models.call)
    )


@router.get("/model/insights", response_model=Insights)
async def read_insights(collection: CollectionPath, runtime: RuntimeDep) -> Any:
    """What the active model learned, from the collection's items: a 2-D map of the codes,
    per-bit activation rates, reconstructions and tangent directions (images), the
    reconstruction field (images, vectors). Computed once per model version, then cached."""
    state, serving = runtime.registry.serving(collection)
    return await run_in_threadpool(insights, state, serving, runtime)


@router.get("/model/tangents", response_model=Tangents)
async def read_tangents(
    collection: CollectionPath,
    runtime: RuntimeDep,
    item: Annotated[str, Query(min_length=1, max_length=256, description="Item id.")],
) -> Any:
    """The encoder's leading tangent directions at one stored image (image collections)."""
    state, serving = runtime.registry.serving(collection)
    if not state.modality.pixels:
        raise InvalidInput("tangent directions are drawn for image collections only", "item")
    _, row = runtime.registry.get_item(collection, item)
    value = state.modality.from_bytes(row.payload)
    return await run_in_threadpool(
        item_tangents, state, serving, row.id, value, runtime.models.call
    )
