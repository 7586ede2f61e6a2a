"""Denoise: the autoencoder's reconstruction of (corrupted) items."""

from __future__ import annotations

from fastapi import APIRouter

from service.deps import RuntimeDep
from service.errors import model_rejected
from service.json_route import JsonBodyRoute
from service.routes.common import CollectionPath, item_fields, serving_batch
from service.schemas import DenoiseRequest, DenoiseResponse

router = APIRouter(prefix="/collections/{collection}", tags=["denoise"], route_class=JsonBodyRoute)


@router.post("/denoise", response_model=DenoiseResponse)
async def denoise_items(
    collection: CollectionPath, body: DenoiseRequest, runtime: RuntimeDep
) -> DenoiseResponse:
    """Images: reconstruction as base64 PNG; text: top reconstructed terms; vectors: values."""
    state, serving, items = serving_batch(collection, body.items, runtime)
    try:
        out = await runtime.models.run(serving.model.denoise, items)
    except ValueError as exc:
        raise model_rejected(exc, item_fields(state, len(body.items)), "items") from None
    return DenoiseResponse(model_version=serving.version, items=state.modality.denoised(out))
