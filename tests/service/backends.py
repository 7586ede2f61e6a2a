"""The two storage backends as test fixtures: one contract, run against each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.store import CodeIndex, ItemStore

BACKENDS = ["local", "milvus"]


def open_store(kind: str, data_dir: Path) -> ItemStore:
    if kind == "milvus":
        pytest.importorskip("pymilvus")
        from service.milvus_store import MilvusStore

        return MilvusStore(str(data_dir / "milvus.db"), data_dir, timeout=60.0)
    from service.sqlite_store import SqliteStore

    return SqliteStore(data_dir / "bitseek.sqlite3", "NORMAL")


def index_factory(kind: str, store: ItemStore) -> Callable[[int], CodeIndex]:
    if kind == "milvus":
        from service.milvus_index import MilvusIndex

        client: Any = getattr(store, "client")  # noqa: B009 - only MilvusStore has one

        def make(bits: int) -> CodeIndex:
            return MilvusIndex(client, bits, timeout=60.0)

        return make
    from service.registry import default_index_factory

    return default_index_factory
