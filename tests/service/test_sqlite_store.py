"""SQLite storage: durability settings, transactions, read-only and second connections (what
every ItemStore does is in test_store_contract.py)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from service.sqlite_store import SqliteStore, connect
from service.store import ItemWrite

pytestmark = pytest.mark.local_backend("the SQLite store itself")


def test_wal_and_synchronous_full_by_default(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_failed_transaction_changes_nothing(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    store.create_collection("c", "text", {})
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as c:
        c.execute(
            "INSERT INTO items(collection, id, payload, metadata, seq)"
            " VALUES ('c', 'a', x'00', '{}', 1)"
        )
        raise RuntimeError("boom")
    assert store.get_item("c", "a") is None
    store.close()


@pytest.mark.parametrize("name", ["data #1", "100%25 data", "a?b"])
def test_read_only_connection_opens_the_store_whatever_its_path(tmp_path: Path, name: str) -> None:
    """The retraining worker reads through this connection; a '#', '%' or '?' in the data
    dir must not make SQLite open (or create) some other file."""
    path = tmp_path / name / "bitseek.sqlite3"
    store = SqliteStore(path)
    store.create_collection("c", "text", {})
    conn = connect(path, readonly=True)
    try:
        assert conn.execute("SELECT name FROM collections").fetchall() == [("c",)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM collections")
    finally:
        conn.close()
        store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_another_connection_sees_the_shared_sequence_and_commits(tmp_path: Path) -> None:
    one = SqliteStore(tmp_path / "db.sqlite3", "NORMAL")
    two = SqliteStore(tmp_path / "db.sqlite3", "NORMAL")
    one.create_collection("c", "text", {})
    before = two.outside_commits()
    _, seq_one = one.upsert_items("c", [ItemWrite("a", b"x", {}, None)], None)
    assert two.outside_commits() != before  # two learns that someone else committed
    _, seq_two = two.upsert_items("c", [ItemWrite("b", b"y", {}, None)], None)
    assert seq_two == seq_one + 1 == one.max_seq()  # one sequence for every writer
    mine = one.outside_commits()
    one.upsert_items("c", [ItemWrite("c", b"z", {}, None)], None)
    assert one.outside_commits() == mine  # its own commits do not count


def test_one_job_per_collection_across_stores_until_its_owner_dies(tmp_path: Path) -> None:
    one = SqliteStore(tmp_path / "db.sqlite3", "NORMAL")
    two = SqliteStore(tmp_path / "db.sqlite3", "NORMAL")
    job = {"id": "j1", "collection": "c", "state": "training", "settings": {}, "progress": {}}
    job["created_at"] = 0.0
    assert one.claim_job({**job, "owner": os.getpid()}) is None
    assert two.claim_job({**job, "id": "j2", "owner": os.getpid()}) == "j1"
    assert two.running_job("c") == "j1" and two.fail_unfinished_jobs() == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    one.put_job({**job, "owner": dead.pid})  # its process is gone: the lease is free
    assert two.running_job("c") is None
    assert two.claim_job({**job, "id": "j3", "owner": os.getpid()}) is None
    failed = one.get_job("j1")
    assert failed is not None and failed["state"] == "failed"
