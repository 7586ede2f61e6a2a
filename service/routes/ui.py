"""The web page: collections, search, denoise, what the model learned, admin, and the API docs.

Every page is rendered on the server from the same functions as its JSON twin (linked from the
page with ``rel="alternate"``), its forms are plain GET forms, and small scripts on top make them
live by calling the public API only. Assets are shipped in the package (``service/web``) and
served with content-hashed URLs; nothing is fetched from the internet.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import numpy as np
from fastapi import APIRouter, Header, Query, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from service.collection import CollectionState
from service.deps import RuntimeDep
from service.errors import BitseekError
from service.routes.collections import public
from service.routes.search import search_items
from service.routes.search_get import search_request
from service.routes.visuals import insights, model_summary
from service.runtime import Runtime
from service.schemas import SearchResponse
from service.web.assets import STATIC, Assets

router = APIRouter(include_in_schema=False)
assets = Assets()
templates = Environment(
    loader=FileSystemLoader(STATIC.parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.globals["static"] = assets.url
PAGE_INCLUDE = "code,preview"


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status)


def error_page(exc: BitseekError) -> HTMLResponse:
    return render("error.html", exc.status, title="Not available", message=exc.message)


def bit_cells(code: str | None, query: str, bits: int) -> list[tuple[int, bool]]:
    """(bit, differs from the query's) for each bit of a hit's hex code."""
    if not code:
        return []
    mine = np.unpackbits(np.frombuffer(bytes.fromhex(code), dtype=np.uint8))[:bits]
    theirs = np.unpackbits(np.frombuffer(bytes.fromhex(query), dtype=np.uint8))[:bits]
    return [(int(b), bool(b != q)) for b, q in zip(mine, theirs, strict=True)]


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else ""


templates.filters["when"] = _when


def _collection_row(state: CollectionState, runtime: Runtime) -> dict[str, Any]:
    serving = state.serving
    summary = model_summary(state, serving, runtime) if serving is not None else None
    return {"public": public(state), "summary": summary}


@router.get("/", response_class=HTMLResponse)
def index_page(runtime: RuntimeDep) -> HTMLResponse:
    states = sorted(runtime.registry.states.values(), key=lambda s: s.name)
    rows = [_collection_row(s, runtime) for s in states]
    return render("index.html", title="Collections", rows=rows, twin="/v1/collections")


@router.get("/c/{collection}", response_class=HTMLResponse)
async def search_page(collection: str, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    try:
        state = runtime.registry.get(collection)
    except BitseekError as exc:
        return error_page(exc)
    params = dict(request.query_params)
    context: dict[str, Any] = {
        "title": f"Search {collection}",
        "c": _collection_row(state, runtime),
        "modality": state.modality,
        "params": params,
        "errors": {},
        "result": None,
        "twin": f"/v1/collections/{collection}",
        "bit_cells": bit_cells,
    }
    has_query = any(params.get(f, "").strip() for f in ("text", "id", "code", "vector"))
    if has_query:
        try:
            body = search_request({**params, "include": PAGE_INCLUDE})
            answer = await search_items(collection, body, runtime)  # the API's JSON, as is
            context["result"] = SearchResponse.model_validate_json(bytes(answer.body))
            query = {k: v for k, v in params.items() if v.strip()}
            context["twin"] = f"/v1/collections/{quote(collection)}/search?{urlencode(query)}"
        except BitseekError as exc:
            context["errors"] = {exc.field or "query": exc.message}
    return render("search.html", **context)


@router.get("/c/{collection}/denoise", response_class=HTMLResponse)
async def denoise_page(
    collection: str,
    runtime: RuntimeDep,
    id: Annotated[str, Query()] = "",
    text: Annotated[str, Query()] = "",
    noise: Annotated[float, Query(ge=0.0, le=1.0)] = 0.3,
    mode: Annotated[str, Query(pattern="^(noise|mask)$")] = "noise",
) -> HTMLResponse:
    try:
        state, serving = runtime.registry.serving(collection)
    except BitseekError as exc:
        return error_page(exc)
    context: dict[str, Any] = {
        "title": f"Denoise {collection}",
        "c": _collection_row(state, runtime),
        "modality": state.modality,
        "params": {"id": id, "text": text, "noise": noise, "mode": mode},
        "errors": {},
        "shown": None,
        "twin": f"/v1/collections/{collection}",
    }
    if id or text:
        try:
            context["shown"] = await _denoise(state, runtime, id, text, noise, mode)
        except BitseekError as exc:
            context["errors"] = {exc.field or "id": exc.message}
    return render("denoise.html", **context)


async def _denoise(
    state: CollectionState, runtime: Runtime, item_id: str, text: str, noise: float, mode: str
) -> dict[str, Any]:
    """Corrupt one item (seeded), reconstruct it: what the page shows side by side."""
    _, serving = runtime.registry.serving(state.name)
    if item_id:
        _, row = runtime.registry.get_item(state.name, item_id)
        value = state.modality.from_bytes(row.payload)
    else:
        value = state.modality.decode(text, "text")
    corrupted = state.modality.corrupt(value, noise, mode, np.random.RandomState(0))
    out = await runtime.models.run(serving.model.denoise, state.modality.batch([corrupted]))
    denoised = state.modality.denoised(out)[0]
    return {
        "original": state.modality.to_json(value),
        "corrupted": state.modality.to_json(corrupted),
        "denoised": denoised,
    }


@router.get("/c/{collection}/model", response_class=HTMLResponse)
async def model_page(collection: str, runtime: RuntimeDep) -> HTMLResponse:
    try:
        state, serving = runtime.registry.serving(collection)
    except BitseekError as exc:
        return error_page(exc)
    pictures = await run_in_threadpool(insights, state, serving, runtime)
    return render(
        "model.html",
        title=f"What {collection}'s model learned",
        c=_collection_row(state, runtime),
        modality=state.modality,
        insights=pictures,
        twin=f"/v1/collections/{collection}/model/insights",
    )


@router.get("/admin", response_class=HTMLResponse)
def admin_page(runtime: RuntimeDep) -> HTMLResponse:
    states = sorted(runtime.registry.states.values(), key=lambda s: s.name)
    return render(
        "admin.html",
        title="Admin",
        names=[s.name for s in states],
        enabled=bool(runtime.settings.admin_token),
        twin="/v1/collections",
    )


@router.get("/-/static/{name:path}")
def static_file(
    name: str,
    h: Annotated[str | None, Query()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    return assets.response(name, h, if_none_match)


DOCS: dict[str, Any] = {"openapi_url": "/openapi.json", "title": "Bitseek API"}


@router.get("/docs", response_class=HTMLResponse)
def swagger_docs() -> HTMLResponse:
    js, css, icon = (assets.url(f) for f in ("vendor/swagger-ui-bundle.js",
                                              "vendor/swagger-ui.css", "favicon.svg"))  # fmt: skip
    return get_swagger_ui_html(
        **DOCS, swagger_js_url=js, swagger_css_url=css, swagger_favicon_url=icon
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc_docs() -> HTMLResponse:
    js, icon = assets.url("vendor/redoc.standalone.js"), assets.url("favicon.svg")
    return get_redoc_html(**DOCS, redoc_js_url=js, redoc_favicon_url=icon, with_google_fonts=False)
