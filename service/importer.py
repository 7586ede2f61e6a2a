"""Bulk import: a whole archive as a stream of JSON lines, written in durable batches.

Items travel as the API's item objects (``{"id", "text" | "image" | "vector", "metadata"}``), one
JSON object a line (NDJSON; ``service.archive`` makes those lines from a file or folder). A
``LineImport`` validates them, batches them and stores each batch through the registry (one
model call, one transaction), optionally skipping ids already stored, so an interrupted import
run again picks up where it stopped. Used by ``POST /v1/collections/{c}/items/import`` and by
``bitseek import``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from pydantic import ValidationError

from service.errors import BitseekError, InvalidInput
from service.registry import NewItem, Registry
from service.routes.common import new_item
from service.schemas import ImportResponse, ItemIn


@dataclass(frozen=True)
class BatchResult:
    written: int
    skipped: int
    seq: int | None  # the batch's write sequence number; None when nothing was written
    model_version: int | None


def write_batch(
    registry: Registry, collection: str, items: Sequence[NewItem], skip_existing: bool
) -> BatchResult:
    """Store ``items`` (all or nothing); with ``skip_existing``, ids already stored are left."""
    skipped = 0
    if skip_existing:
        stored = registry.store.existing_ids(collection, [item.id for item in items])
        fresh = [item for item in items if item.id not in stored]
        skipped, items = len(items) - len(fresh), fresh
    if not items:
        return BatchResult(0, skipped, None, None)
    count, version, seq = registry.upsert(collection, items)
    return BatchResult(count, skipped, seq, version)


class LineImport:
    """NDJSON in (whole lines or chunks of a stream), durable batches out.

    An error names its line (``line N``, counting every line) and says how many items before it
    are stored (the batches before the bad line's)."""

    def __init__(
        self,
        registry: Registry,
        collection: str,
        batch: int,
        skip_existing: bool,
        max_line_bytes: int | None = None,
    ) -> None:
        self.registry = registry
        self.collection = collection
        self.state = registry.get(collection)
        self.batch = batch
        self.skip_existing = skip_existing
        self.max_line_bytes = max_line_bytes
        self.result = ImportResponse(imported=0, skipped=0, batches=0, seq=None, model_version=None)
        self._pending: list[NewItem] = []
        self._lines = 0
        self._rest = b""

    def feed(self, chunk: bytes) -> None:
        """A piece of the stream: the lines it completes are added, the rest waits."""
        *lines, self._rest = (self._rest + chunk).split(b"\n")
        for line in lines:
            self.add(line)
        if self.max_line_bytes is not None and len(self._rest) > self.max_line_bytes:
            self._fail(f"longer than {self.max_line_bytes} bytes", self._lines + 1)

    def add(self, line: bytes) -> None:
        """The next line of the stream (blank lines count but carry nothing)."""
        self._lines += 1
        if not line.strip():
            return
        if self.max_line_bytes is not None and len(line) > self.max_line_bytes:
            self._fail(f"longer than {self.max_line_bytes} bytes", self._lines)
        field = f"line {self._lines}"
        try:
            item = ItemIn.model_validate_json(line)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            detail = f"{where}: {first['msg']}" if where else first["msg"]
            self._fail(detail, self._lines)
        try:
            self._pending.append(new_item(item, self.state, field))
        except InvalidInput as exc:
            self._fail(exc.message, self._lines, exc.field)
        if len(self._pending) >= self.batch:
            self._flush()

    def finish(self) -> ImportResponse:
        """The last line (a stream need not end with a newline), the last batch; the totals."""
        rest, self._rest = self._rest, b""
        if rest:
            self.add(rest)
        self._flush()
        return self.result

    def _flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            done = write_batch(self.registry, self.collection, batch, self.skip_existing)
        except BitseekError as exc:
            raise type(exc)(f"{exc.message}; {self._stored()}", exc.field) from None
        self.result.imported += done.written
        self.result.skipped += done.skipped
        if done.seq is not None:
            self.result.batches += 1
            self.result.seq, self.result.model_version = done.seq, done.model_version

    def _fail(self, detail: str, line: int, field: str | None = None) -> NoReturn:
        message = detail if field else f"line {line}: {detail}"
        raise InvalidInput(f"{message}; {self._stored()}", field or f"line {line}")

    def _stored(self) -> str:
        return f"{self.result.imported} item(s) before it are stored"
