"""Denoise: the autoencoder's reconstruction of (corrupted) items."""

from __future__ import annotations

import asyncio

import numpy as np
from fastapi import APIRouter

from service.backend import infer
from service.deps import RuntimeDep
from service.errors import InvalidInput, model_rejected
from service.payloads import encode_png
from service.routes.common import CollectionPath, item_fields, serving_batch
from service.routes.utf8 import Utf8Route
from service.schemas import Denoised, DenoiseRequest, DenoiseResponse, Term

router = APIRouter(prefix="/collections/{collection}", tags=["denoise"], route_class=Utf8Route)


@router.post("/denoise", response_model=DenoiseResponse)
async def denoise_items(
    collection: CollectionPath, body: DenoiseRequest, runtime: RuntimeDep
) -> DenoiseResponse:
    """Images: reconstruction as base64 PNG; text: top reconstructed terms; vectors: values."""
    state, serving, items = serving_batch(collection, body.items, runtime)
    loop = asyncio.get_running_loop()
    try:
        out = await loop.run_in_executor(runtime.executor, infer, serving.model.denoise, items)
    except ValueError as exc:
        raise model_rejected(exc, item_fields(state, len(body.items)), "items") from None
    if state.modality != "text":  # term weights are bounded; pixels and values can overflow
        _check_finite(np.asarray(out), state.modality)
    if state.modality == "text":
        result = [Denoised(terms=[Term(term=t, weight=float(w)) for t, w in row]) for row in out]
    elif state.modality == "image":
        result = [Denoised(image=encode_png(np.asarray(img))) for img in out]
    else:
        result = [Denoised(vector=np.asarray(v, dtype=np.float64).tolist()) for v in out]
    return DenoiseResponse(model_version=serving.version, items=result)


def _check_finite(out: np.ndarray, modality: str) -> None:
    """A float32 input near its range overflows inside the network: refuse, don't send nulls."""
    finite = np.isfinite(out.reshape(len(out), -1)).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise InvalidInput(
            "the model cannot reconstruct this item: its values are so far from the training"
            " data that the reconstruction is not finite",
            f"items[{i}].{modality}",
        )
