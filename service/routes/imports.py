"""Bulk import: newline-delimited JSON items streamed in one request, stored in batches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from service.deps import RuntimeDep
from service.importer import LineImport
from service.routes.common import CollectionPath
from service.schemas import ImportResponse

router = APIRouter(prefix="/collections/{collection}/items", tags=["items"])


@router.post("/import", response_model=ImportResponse)
async def import_items(
    collection: CollectionPath,
    request: Request,
    runtime: RuntimeDep,
    skip_existing: Annotated[
        bool, Query(description="Leave items whose id is stored (to resume an import).")
    ] = False,
    batch: Annotated[int, Query(ge=1, le=10_000, description="Items per transaction.")] = 500,
) -> ImportResponse:
    """Items as newline-delimited JSON (one item object a line, as in an upsert), streamed:
    written in transactions of ``batch`` items as they arrive, each durable when written. An
    error names its line and says how many items before it were stored."""
    limit = runtime.settings.max_body_bytes  # per line here
    job = LineImport(runtime.registry, collection, batch, skip_existing, limit)
    # parsing leaves the event loop as well as writing: searches keep their latency meanwhile
    async for chunk in request.stream():
        await run_in_threadpool(job.feed, chunk)
    return await run_in_threadpool(job.finish)
