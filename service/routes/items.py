"""Items: batch upsert (JSON or multipart image upload), read, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from pydantic import ValidationError

from service.deps import RuntimeDep
from service.errors import InvalidInput
from service.json_route import JsonBodyRoute
from service.registry import NewItem
from service.routes.common import CollectionPath, ItemPath, check_batch, new_item
from service.schemas import (
    METADATA,
    ItemPublic,
    Message,
    UpsertRequest,
    UpsertResponse,
    unicode_problem,
)

router = APIRouter(
    prefix="/collections/{collection}/items", tags=["items"], route_class=JsonBodyRoute
)


@router.post("", response_model=UpsertResponse)
def upsert_items(
    collection: CollectionPath, body: UpsertRequest, runtime: RuntimeDep
) -> UpsertResponse:
    """Insert or overwrite items; all-or-nothing, durable once answered."""
    state = runtime.registry.get(collection)
    check_batch(len(body.items), runtime.settings.max_batch_items)
    items = [new_item(item, state, f"items[{i}]") for i, item in enumerate(body.items)]
    count, version, seq = runtime.registry.upsert(collection, items)
    return UpsertResponse(upserted=count, model_version=version, seq=seq)


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
    if not state.modality.takes_files:
        raise InvalidInput(f"collection {collection!r} holds {state.modality.name} items", "file")
    try:  # the JSON route's rules: a flat object of finite numbers, strings, booleans, null
        meta = METADATA.validate_json(metadata)
    except ValidationError as exc:
        raise InvalidInput(_metadata_problem(exc), "metadata") from None
    for field, value in (("id", id), ("metadata", meta)):
        problem = unicode_problem(value)
        if problem is not None:
            raise InvalidInput(f"not valid Unicode: {problem}", field)
    raw = file.file.read(runtime.settings.max_body_bytes + 1)
    item = NewItem(id, state.modality.decode_upload(raw, "file"), meta, "file")
    count, version, seq = runtime.registry.upsert(collection, [item])
    return UpsertResponse(upserted=count, model_version=version, seq=seq)


def _metadata_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    if first["type"] == "json_invalid":
        return f"metadata is not JSON: {first['msg']}"
    if first["loc"]:
        return (
            f"metadata[{first['loc'][0]!r}] must be a string, a finite number, a boolean or"
            " null (NaN and Infinity are not JSON numbers)"
        )
    return f"metadata must be a flat JSON object: {first['msg']}"


@router.get("/{item_id:path}", response_model=ItemPublic)
def read_item(collection: CollectionPath, item_id: ItemPath, runtime: RuntimeDep) -> ItemPublic:
    """One stored item, with its code under the active model."""
    state, row = runtime.registry.get_item(collection, item_id)
    decoded = state.modality.from_bytes(row.payload)
    serving = state.serving
    code, version = None, None
    if serving is not None:
        version = serving.version
        code = row.code_under(serving.version)
        if code is None:
            code = bytes(
                runtime.models.call(serving.model.encode, state.modality.batch([decoded]))[0]
            )
    return ItemPublic(
        id=row.id,
        metadata=row.metadata,
        code=code.hex() if code is not None else None,
        model_version=version,
        **{state.modality.name: state.modality.to_json(decoded)},
    )


@router.delete("/{item_id:path}", response_model=Message)
def delete_item(collection: CollectionPath, item_id: ItemPath, runtime: RuntimeDep) -> Message:
    """Delete one item."""
    runtime.registry.delete_item(collection, item_id)
    return Message(message=f"item {item_id!r} deleted")
