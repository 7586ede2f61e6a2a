"""Encode: items in, codes out (nothing stored); micro-batched with concurrent requests."""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter

from service.codes import to_hex
from service.deps import RuntimeDep
from service.errors import model_rejected
from service.json_route import JsonBodyRoute
from service.routes.common import CollectionPath, item_fields, serving_batch
from service.schemas import EncodeRequest, EncodeResponse

router = APIRouter(prefix="/collections/{collection}", tags=["encode"], route_class=JsonBodyRoute)


@router.post("/encode", response_model=EncodeResponse)
async def encode_items(
    collection: CollectionPath, body: EncodeRequest, runtime: RuntimeDep
) -> EncodeResponse:
    """Binary codes (hex) of the given items under the active model."""
    state, serving, items = serving_batch(collection, body.items, runtime)
    model = serving.model
    try:
        codes = await runtime.models.batched((id(model), "encode"), model.encode, items)
        continuous = None
        if body.continuous:
            values = await runtime.models.batched(
                (id(model), "continuous"), model.encode_continuous, items
            )
            continuous = np.asarray(values, dtype=np.float64).round(6).tolist()
    except ValueError as exc:
        raise model_rejected(exc, item_fields(state, len(body.items)), "items") from None
    return EncodeResponse(
        bits=model.bits, model_version=serving.version, codes=to_hex(codes), continuous=continuous
    )
