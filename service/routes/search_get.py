"""Search as a GET with query parameters: the JSON twin of the search page's URL, so a search
that can be bookmarked in the browser can also be fetched with curl.

``/c/{collection}?text=socket&k=10`` (the page) <-> ``/v1/collections/{collection}/search?...``.
Parameters are the POST body's fields; ``vector`` is comma-separated numbers, ``filter`` is
``key=value`` pairs separated by commas (a value is read as JSON when it is a JSON scalar, so
``label=3`` matches the number 3 and ``label="3"`` the string), ``include`` is comma-separated.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from pydantic import ValidationError

from service.deps import RuntimeDep
from service.errors import InvalidInput
from service.routes.common import CollectionPath
from service.routes.search import search_items
from service.schemas import SearchRequest, SearchResponse
from service.utf8_route import Utf8Route

router = APIRouter(prefix="/collections/{collection}", tags=["search"], route_class=Utf8Route)
FIELDS = ("text", "image", "vector", "id", "code", "max_distance", "k", "filter", "include")


def parse_filter(text: str) -> dict[str, Any]:
    """``label=3, lang="en"`` -> {"label": 3, "lang": "en"}; InvalidInput naming ``filter``."""
    out: dict[str, Any] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(
                f"filter {part!r}: write key=value pairs separated by commas, e.g. label=3",
                "filter",
            )
        raw = raw.strip()
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if isinstance(value, dict | list):
            value = raw
        out[key.strip()] = value
    return out


def search_request(params: Mapping[str, str]) -> SearchRequest:
    """The query parameters of a search URL as a validated SearchRequest (empty ones ignored);
    errors are InvalidInput naming the parameter."""
    body: dict[str, Any] = {}
    for name in FIELDS:
        value = params.get(name, "").strip() if name != "text" else params.get(name, "")
        if not value.strip():
            continue
        if name == "vector":
            try:
                body[name] = [float(v) for v in value.replace(" ", ",").split(",") if v]
            except ValueError:
                raise InvalidInput("vector: numbers separated by commas", "vector") from None
        elif name == "filter":
            body[name] = parse_filter(value)
        elif name == "include":
            body[name] = [v.strip() for v in value.split(",") if v.strip()]
        else:
            body[name] = value
    try:
        return SearchRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "query"
        raise InvalidInput(f"{field}: {first['msg']}", field) from None


@router.get("/search", response_model=SearchResponse)
async def search_items_get(
    collection: CollectionPath,
    runtime: RuntimeDep,
    text: Annotated[str | None, Query(description="Text query (text collections).")] = None,
    id: Annotated[str | None, Query(description="Use a stored item as the query.")] = None,
    code: Annotated[str | None, Query(description="Raw code: hex.")] = None,
    vector: Annotated[str | None, Query(description="Comma-separated numbers.")] = None,
    k: Annotated[str | None, Query(description="At most k hits.")] = None,
    max_distance: Annotated[str | None, Query(description="Hamming radius.")] = None,
    filter: Annotated[str | None, Query(description="key=value pairs, comma-separated.")] = None,
    include: Annotated[
        str | None, Query(description="code, preview and/or payload, comma-separated.")
    ] = None,
) -> Response:
    """The POST search as a GET (no image queries: upload those with POST)."""
    given = {
        "text": text,
        "id": id,
        "code": code,
        "vector": vector,
        "k": k,
        "max_distance": max_distance,
        "filter": filter,
        "include": include,
    }
    body = search_request({name: v for name, v in given.items() if v is not None})
    return await search_items(collection, body, runtime)
