"""Items: batch upsert (JSON or multipart image upload), read, delete."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, UploadFile

from service.deps import RuntimeDep
from service.errors import InvalidInput
from service.payloads import decode_image_bytes, encode_png, image_shape
from service.registry import NewItem
from service.routes.common import CollectionPath, ItemPath, check_batch, payload_value
from service.schemas import ItemPublic, Message, UpsertRequest, UpsertResponse

router = APIRouter(prefix="/collections/{collection}/items", tags=["items"])


@router.post("", response_model=UpsertResponse)
def upsert_items(
    collection: CollectionPath, body: UpsertRequest, runtime: RuntimeDep
) -> UpsertResponse:
    """Insert or overwrite items; all-or-nothing, durable once answered."""
    state = runtime.registry.get(collection)
    check_batch(len(body.items), runtime.settings.max_batch_items)
    items = [
        NewItem(item.id, payload_value(item, state, f"items[{i}]"), item.metadata, f"items[{i}]")
        for i, item in enumerate(body.items)
    ]
    count, version = runtime.registry.upsert(collection, items)
    return UpsertResponse(upserted=count, model_version=version)


@router.post("/upload", response_model=UpsertResponse)
def upload_image(
    collection: CollectionPath,
    runtime: RuntimeDep,
    file: Annotated[UploadFile, File(description="PNG or JPEG image.")],
    id: Annotated[str, Form(min_length=1, max_length=256, description="Item id.")],
    metadata: Annotated[str, Form(description="Metadata as a JSON object.")] = "{}",
) -> UpsertResponse:
    """Upsert one image item sent as a multipart upload (image collections)."""
    state = runtime.registry.get(collection)
    if state.modality != "image":
        raise InvalidInput(f"collection {collection!r} holds {state.modality} items", "file")
    try:
        meta: Any = json.loads(metadata)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"metadata is not JSON: {exc.msg}", "metadata") from None
    if not isinstance(meta, dict) or any(isinstance(v, dict | list) for v in meta.values()):
        raise InvalidInput("metadata must be a flat JSON object", "metadata")
    raw = file.file.read(runtime.settings.max_body_bytes + 1)
    limits = runtime.registry.limits
    pixels = decode_image_bytes(raw, "file", image_shape(state.spec), limits["max_image_pixels"])
    # re-encode losslessly so the one upsert path validates and stores it like JSON uploads
    item = NewItem(id, encode_png(pixels), meta, "file")
    count, version = runtime.registry.upsert(collection, [item])
    return UpsertResponse(upserted=count, model_version=version)


@router.get("/{item_id:path}", response_model=ItemPublic)
def read_item(collection: CollectionPath, item_id: ItemPath, runtime: RuntimeDep) -> ItemPublic:
    """One stored item, with its code under the active model."""
    state, row = runtime.registry.get_item(collection, item_id)
    value = state.codec.to_json(state.codec.from_bytes(row.payload))
    code = bytes(row.code).hex() if row.code is not None else None
    return ItemPublic(
        id=row.id,
        metadata=row.metadata,
        code=code,
        model_version=row.version,
        **{state.modality: value},
    )


@router.delete("/{item_id:path}", response_model=Message)
def delete_item(collection: CollectionPath, item_id: ItemPath, runtime: RuntimeDep) -> Message:
    """Delete one item."""
    runtime.registry.delete_item(collection, item_id)
    return Message(message=f"item {item_id!r} deleted")
