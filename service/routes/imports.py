"""Bulk import: newline-delimited JSON items streamed in one request, stored in batches."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from service.collection import CollectionState
from service.deps import RuntimeDep
from service.errors import Conflict, InvalidInput
from service.importer import write_batch
from service.registry import NewItem
from service.routes.common import CollectionPath, new_item
from service.runtime import Runtime
from service.schemas import ImportResponse, ItemIn

router = APIRouter(prefix="/collections/{collection}/items", tags=["items"])


class _Import:
    """What an import wrote so far; it says so in every error, since those batches stay."""

    def __init__(
        self, runtime: Runtime, state: CollectionState, skip_existing: bool, batch: int
    ) -> None:
        self.runtime = runtime
        self.state = state
        self.collection = state.name
        self.skip_existing = skip_existing
        self.batch = batch
        self.pending: list[NewItem] = []
        self.result = ImportResponse(imported=0, skipped=0, batches=0, seq=None, model_version=None)

    def stored(self) -> str:
        return f"{self.result.imported} item(s) before it are stored"

    async def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        args = (self.runtime.registry, self.collection, batch, self.skip_existing)
        try:
            done = await run_in_threadpool(write_batch, *args)
        except (InvalidInput, Conflict) as exc:
            raise type(exc)(f"{exc.message}; {self.stored()}", exc.field) from None
        self.result.imported += done.written
        self.result.skipped += done.skipped
        if done.seq is not None:
            self.result.batches += 1
            self.result.seq, self.result.model_version = done.seq, done.model_version


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
    job = _Import(runtime, runtime.registry.get(collection), skip_existing, batch)
    limit = runtime.settings.max_body_bytes  # per line here
    number = 0
    rest = b""
    async for chunk in request.stream():
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            number += 1
            await _add(job, line, number)
        if len(rest) > limit:  # a line not finished yet, and already too long
            raise InvalidInput(f"line {number + 1} is longer than {limit} bytes", "body")
    await _add(job, rest, number + 1)
    await job.flush()
    return job.result


async def _add(job: _Import, line: bytes, number: int) -> None:
    if not line.strip():
        return
    field = f"line {number}"
    limit = job.runtime.settings.max_body_bytes
    if len(line) > limit:
        raise InvalidInput(f"{field} is longer than {limit} bytes; {job.stored()}", field)
    try:
        item = ItemIn.model_validate_json(line)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        detail = f"{where}: {first['msg']}" if where else first["msg"]
        raise InvalidInput(f"{field}: {detail}; {job.stored()}", field) from None
    try:
        job.pending.append(new_item(item, job.state, field))
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.message}; {job.stored()}", exc.field) from None
    if len(job.pending) >= job.batch:
        await job.flush()
