"""Search by text, image, vector, stored item id or raw code; radius and/or k; filter."""

from __future__ import annotations

import time
from functools import partial

import numpy as np
import scipy.sparse as sp
from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from service.backend import Model
from service.codes import from_hex, to_hex
from service.collection import CollectionState, Serving
from service.deps import RuntimeDep
from service.errors import InvalidInput, NotFound
from service.hit_details import hit_details
from service.json_route import JsonBodyRoute
from service.routes.common import JSON, CollectionPath, decode_queries, json_response
from service.runtime import Runtime
from service.schemas import Payload, SearchRequest, SearchResponse

router = APIRouter(prefix="/collections/{collection}", tags=["search"], route_class=JsonBodyRoute)
QUERY_FIELDS = ("text", "image", "vector", "id", "code")


async def query_code(
    body: SearchRequest, state: CollectionState, serving: Serving, runtime: Runtime
) -> np.ndarray:
    """The query as a uint8 (1, bits // 8) code under ``serving``'s model."""
    given = [name for name in QUERY_FIELDS if getattr(body, name) is not None]
    if len(given) != 1:
        raise InvalidInput(
            f"give exactly one query: text, image, vector, id or code; got {given or 'none'}",
            "query",
        )
    model = serving.model
    if body.code is not None:
        return from_hex(body.code, model.bits)
    if body.id is not None:
        row = await run_in_threadpool(runtime.store.get_item, state.name, body.id)
        if row is None:
            raise NotFound(f"collection {state.name!r} has no item {body.id!r}", "id")
        stored = row.code_under(serving.version)
        if stored is not None:
            return np.frombuffer(stored, dtype=np.uint8).reshape(1, -1)
        items = state.modality.batch([state.modality.from_bytes(row.payload)])
    else:
        payload = Payload(text=body.text, image=body.image, vector=body.vector)
        items = decode_queries(state, [payload], "")
    try:
        if body.text is None:
            codes = await runtime.models.batched((id(model), "encode"), model.encode, items)
        else:
            key = (id(model), "text query")
            codes, known = await runtime.models.batched(key, partial(_text_codes, model), items)
            if not known[0]:
                # its code would be the empty document's: the same arbitrary hits for every such
                # query
                raise InvalidInput(
                    "no word of this text is in the model's vocabulary, so it cannot be searched"
                    " for; retrain the collection once it holds documents with these words",
                    "text",
                )
    except ValueError as exc:
        raise InvalidInput(f"the model rejected the query: {exc}", given[0]) from None
    return np.asarray(codes, dtype=np.uint8).reshape(1, -1)


def _text_codes(model: Model, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codes of a batch of text queries, and for each whether it has a term the model knows;
    the texts are tokenised once for both."""
    features = model.featurize(texts)
    if sp.issparse(features):
        known = np.diff(sp.csr_matrix(features).indptr) > 0
    else:
        known = np.asarray(features != 0).any(axis=1)
    return model.encode_features(features), known


@router.post("/search", response_model=SearchResponse)
async def search_items(
    collection: CollectionPath, body: SearchRequest, runtime: RuntimeDep
) -> Response:
    """Items whose codes are near the query's, sorted by (distance, id)."""
    start = time.perf_counter()
    state, serving = runtime.registry.serving(collection)
    bits = serving.model.bits
    if body.max_distance is not None and body.max_distance > bits:
        raise InvalidInput(
            f"max_distance must be in 0..{bits} for {bits}-bit codes", "max_distance"
        )
    if body.k is not None and body.k > runtime.settings.max_k:
        raise InvalidInput(f"k must be in 1..{runtime.settings.max_k}", "k")
    k = (
        body.k
        if body.k is not None or body.max_distance is not None
        else runtime.settings.default_k
    )
    if body.min_seq is not None and state.applied_seq < body.min_seq:
        await run_in_threadpool(runtime.registry.sync, True)
        state, serving = runtime.registry.serving(collection)
    code = await query_code(body, state, serving, runtime)
    max_k = runtime.settings.max_k
    args = (serving, code, body.max_distance, k, body.filter, max_k)
    if body.max_distance is None and not body.filter:
        # the k nearest cost tens of microseconds: less than a hop to a worker thread
        ranked = state.search(*args)
    else:  # a radius or a filter can rank many items: off the event loop
        ranked = await run_in_threadpool(state.search, *args)
    truncated = k is None and ranked.matched > max_k  # a radius alone: cap the size
    details = None
    if body.include:  # opt-in: reads each hit's stored row
        details = await run_in_threadpool(
            hit_details, ranked.hits(), state, serving, runtime.store, set(body.include)
        )
    answer = SearchResponse(
        hits=details or [],
        truncated=truncated,
        took_ms=round((time.perf_counter() - start) * 1000.0, 3),
        probes=ranked.probes,
        model_version=serving.version,
        bits=bits,
        code=to_hex(code)[0],
        widened=ranked.widened,
        searched_distance=ranked.searched_distance,
    )
    if details is not None:
        return json_response(answer)
    return Response(with_hits(answer, ranked.hits_json()), media_type=JSON)


_NO_HITS = b'{"hits":[]'


def with_hits(answer: SearchResponse, hits_json: bytes) -> bytes:
    """``answer`` (its hits empty) serialised with ``hits_json`` as its hits: the hits are
    written from the item table's records, and the rest of the answer by its model."""
    rest = answer.__pydantic_serializer__.to_json(answer)
    assert rest.startswith(_NO_HITS), "hits must stay the first field of SearchResponse"
    return b'{"hits":' + hits_json + rest[len(_NO_HITS) :]
