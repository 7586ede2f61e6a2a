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

# the stream is parsed in a worker thread a block at a time: a client may send one line a chunk,
# and a thread hop a line would cost more than parsing it
FEED_BYTES = 1 << 18


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
    block: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        block.append(chunk)
        size += len(chunk)
        if size >= FEED_BYTES:
            await run_in_threadpool(job.feed, b"".join(block))
            block, size = [], 0
    await run_in_threadpool(job.feed, b"".join(block))
    return await run_in_threadpool(job.finish)
