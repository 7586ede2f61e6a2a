"""Checks shared by the routers: one payload of the collection's modality, batch limits."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Response
from pydantic import BaseModel

from service.collection import CollectionState, Serving
from service.errors import InvalidInput
from service.registry import NewItem
from service.runtime import Runtime
from service.schemas import ItemIn, Payload

CollectionPath = Annotated[str, Path(description="Collection name.")]
ItemPath = Annotated[str, Path(description="Item id (may contain '/').")]
JobPath = Annotated[str, Path(description="Job id, as returned by retrain.")]
VersionPath = Annotated[int, Path(description="Model version number.")]
JSON = "application/json"


def new_item(item: ItemIn, state: CollectionState, field: str) -> NewItem:
    """One item of a write, its payload checked against the collection's modality."""
    value = payload_value(item, state, field)
    return NewItem(item.id, value, item.metadata, field, item.code, item.model_version)


def payload_value(payload: Payload, state: CollectionState, field: str) -> Any:
    """The one value given (text, image or vector); it must be the collection's modality."""
    given = [name for name in ("text", "image", "vector") if getattr(payload, name) is not None]
    want = state.modality.name  # the JSON field of an item is its modality's name
    if not given:
        raise InvalidInput(f"give the item as {want!r} ({want} collection)", field)
    if len(given) > 1:
        raise InvalidInput(f"give exactly one of text, image, vector; got {given}", field)
    if given[0] != want:
        raise InvalidInput(
            f"collection {state.name!r} holds {want} items; send {want!r}, not {given[0]!r}",
            f"{field}.{given[0]}" if field != "query" else given[0],
        )
    return getattr(payload, want)


def json_response(body: BaseModel, status_code: int = 200) -> Response:
    """``body`` serialised once, by pydantic: FastAPI would validate a returned model against
    the route's response_model again before encoding it (the route keeps it for the docs)."""
    return Response(body.__pydantic_serializer__.to_json(body), status_code, media_type=JSON)


def check_batch(n: int, limit: int, field: str = "items") -> None:
    if n > limit:
        raise InvalidInput(f"batch of {n} items is larger than the limit of {limit}", field)


def decode_queries(state: CollectionState, payloads: list[Payload], field: str) -> Any:
    """Validated payloads -> model items (list of texts / array). ``field`` "" names the
    fields as top-level ones (a search query), else as ``field[i].text`` and so on."""
    if not field:
        value = payload_value(payloads[0], state, "query")
        return state.modality.batch([state.modality.decode(value, state.modality.name)])
    values = [payload_value(p, state, f"{field}[{i}]") for i, p in enumerate(payloads)]
    decoded = state.modality.decode_all(values, item_fields(state, len(values), field))
    return state.modality.batch(decoded)


def item_fields(state: CollectionState, n: int, field: str = "items") -> list[str]:
    """How errors name the values of a batch: ``items[0].text``, ``items[1].text``, ..."""
    return [f"{field}[{i}].{state.modality.name}" for i in range(n)]


def serving_batch(
    collection: str, payloads: list[Payload], runtime: Runtime
) -> tuple[CollectionState, Serving, Any]:
    """The prologue of encode and denoise: the serving model, a checked batch, model items."""
    state, serving = runtime.registry.serving(collection)
    check_batch(len(payloads), runtime.settings.max_batch_items)
    return state, serving, decode_queries(state, payloads, "items")
