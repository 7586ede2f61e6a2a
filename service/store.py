"""The seam between the service and where its items and codes live.

Two protocols, one for each kind of state the service keeps:
- ``ItemStore``: the durable truth. Collections, items (payload, metadata, the code under a model
  version), model versions and retraining jobs; every write is durable when the call returns.
  Today ``service.sqlite_store.SqliteStore``.
- ``CodeIndex``: the codes of one serving model version, searched by Hamming radius or k nearest.
  Built from the ``ItemStore`` when a version starts serving and kept in step with every write.
  Today ``service.index.HammingIndex``.
``service.registry`` and ``service.collection`` speak only these protocols (exact ranking, filters
and version swaps sit above them), so a second backend implements both and nothing above changes.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from service.index import SearchResult


class NameTaken(Exception):
    """A collection of that name exists already (another server sharing the store made it)."""


class CollectionGone(Exception):
    """The collection was deleted (by another server sharing the store)."""


class VersionMoved(Exception):
    """Codes made by a model version that is no longer the collection's active one: another
    server sharing the store activated a new version; catch up and encode again."""


Codes = Sequence[tuple[int, bytes]]  # (item number, packed code)


@dataclass(frozen=True)
class CollectionRow:
    """A collection as stored: ``spec`` holds its bits, shape keys and description."""

    name: str
    modality: str
    spec: dict[str, Any]
    active_version: int | None
    created_at: float


@dataclass(frozen=True)
class ItemRow:
    """A stored item; ``num`` is the store's number for it, ``seq`` its last write's place in
    the store's write order, ``version`` the model version that made ``code``."""

    num: int
    id: str
    payload: bytes
    metadata: dict[str, Any]
    code: bytes | None
    seq: int
    version: int | None

    def code_under(self, version: int) -> bytes | None:
        """The stored code if ``version`` made it; one staged by an activation that has not
        committed (or never will) is not that version's."""
        return self.code if self.version == version else None


@dataclass(frozen=True)
class ItemWrite:
    """An item to insert or overwrite (``code`` None while the collection has no model)."""

    id: str
    payload: bytes
    metadata: dict[str, Any]
    code: bytes | None

    @cached_property
    def metadata_text(self) -> str:
        """``metadata_json`` of the metadata, made once for the store and the memory."""
        return metadata_json(self.metadata)


@dataclass(frozen=True)
class VersionRecord:
    """What the versions table keeps about a model version."""

    metrics: dict[str, Any]
    job_id: str | None


Record = VersionRecord | None  # a version to register with the codes, if any


@dataclass(frozen=True)
class SnapshotRow:
    """What a retraining worker reads of an item."""

    num: int
    id: str
    payload: bytes
    seq: int


class SnapshotReader(Protocol):
    """Reads one collection's items in one consistent snapshot, from another process (a
    retraining worker): picklable, and opens its own connection."""

    def read(self) -> list[SnapshotRow]: ...


class ItemStore(Protocol):
    path: Path

    def close(self) -> None: ...

    # collections
    def create_collection(self, name: str, modality: str, spec: dict[str, Any]) -> None:
        """Raises ``NameTaken`` when the name has a row already."""

    def delete_collection(self, name: str) -> None: ...
    def collections(self) -> list[CollectionRow]: ...

    # items
    def upsert_items(
        self, collection: str, items: Sequence[ItemWrite], version: int | None
    ) -> tuple[list[tuple[int, int | None]], int]:
        """(num, replaced num or None) per item, and the write's sequence number. Codes made
        by a ``version`` that is not the active one raise ``VersionMoved`` (items without codes,
        ``version`` None, are taken: they are encoded when a model serves them); a collection
        that is no more raises ``CollectionGone``."""

    def delete_item(self, collection: str, item_id: str) -> int | None: ...
    def get_item(self, collection: str, item_id: str) -> ItemRow | None: ...
    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]: ...
    def iter_items(
        self, collection: str, after_seq: int = 0, chunk: int = 2000
    ) -> Iterator[list[ItemRow]]: ...
    # (num, id, metadata json, code) of every item, in any order
    def item_keys(self, collection: str) -> list[tuple[int, str, str, bytes | None]]: ...
    def max_seq(self) -> int: ...
    def changed_since(
        self, collection: str, after_seq: int
    ) -> tuple[list[ItemRow], list[tuple[int, int]]]:
        """Items written, and (seq, num) of items deleted, after ``after_seq``."""

    def outside_commits(self) -> int:
        """Changes whenever another process commits: when to look at ``changed_since``."""

    def snapshot_reader(self, collection: str) -> SnapshotReader: ...

    # codes and model versions
    def set_codes(
        self, collection: str, version: int, codes: Codes, active: int, record: Record = None
    ) -> None: ...
    def write_codes(
        self, collection: str, version: int, codes: Codes, chunk: int = 5000
    ) -> None: ...
    def stale_nums(self, collection: str, active: int) -> set[int]: ...
    def active_version(self, collection: str) -> int | None: ...
    def versions(self, collection: str) -> list[dict[str, Any]]: ...

    # retraining jobs: one at a time per collection across every server sharing the store
    def put_job(self, job: dict[str, Any]) -> None: ...
    def claim_job(self, job: dict[str, Any]) -> str | None:
        """Record a new job unless a live one runs on its collection (then that one's id)."""

    def running_job(self, collection: str) -> str | None: ...
    def get_job(self, job_id: str) -> dict[str, Any] | None: ...
    def fail_unfinished_jobs(self) -> int: ...


class CodeIndex(Protocol):
    """Packed uint8 codes (n, bits // 8) under int64 item numbers; ``add`` replaces a number's
    code; searches take one or more queries and answer exactly, sorted by (distance, number)
    or, where the caller says ``ordered=False``, in any order."""

    def __len__(self) -> int: ...
    def add(self, ids: np.ndarray, codes: np.ndarray) -> None: ...
    def remove(self, ids: np.ndarray) -> int: ...
    def search_radius(
        self, codes: np.ndarray, max_distance: int, *, ordered: bool = True
    ) -> SearchResult: ...
    # with_ties: also every further item at the k-th's distance
    def search_knn(
        self, codes: np.ndarray, k: int, *, with_ties: bool = False, ordered: bool = True
    ) -> SearchResult: ...


def metadata_json(metadata: dict[str, Any]) -> str:
    """Metadata as stored and as held in memory: compact JSON, non-ASCII kept as it is (every
    byte counts a million times over)."""
    if not metadata:  # most items of a bulk import: json.dumps would take microseconds for it
        return "{}"
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)


HOST = socket.gethostname()  # whose process ids ``owner_alive`` can check
LEASE_S = 30.0  # a job of another host is live while its record is younger than this
HEARTBEAT_S = 5.0  # how often a live job's record is rewritten (service/jobs.py)


def holder_alive(job: dict[str, Any]) -> bool:
    """Whether the server running ``job`` is alive: on this host, its process exists; on
    another (replicas sharing a Milvus), its record was rewritten within ``LEASE_S`` (every
    live job's is, every ``HEARTBEAT_S``), so a job whose server died frees its collection
    ``LEASE_S`` later."""
    host = job.get("host")
    if host is None or host == HOST:
        return owner_alive(job.get("owner"))
    return time.time() - float(job.get("updated_at") or 0.0) < LEASE_S


def owner_alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs on this machine (this process counts: its jobs are live)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
