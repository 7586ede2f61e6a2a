"""SQLite storage: durability settings, upsert semantics, snapshots by sequence, jobs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from service.sqlite_store import SqliteStore, connect
from service.store import ItemWrite


def test_wal_and_synchronous_full_by_default(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    store.close()


def test_upsert_keeps_num_and_bumps_seq(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3", "NORMAL")
    store.create_collection("c", "text", {})
    rows = store.upsert_items(
        "c", [ItemWrite("a", b"x", {}, b"\x01"), ItemWrite("b", b"y", {}, None)], 1
    )
    assert [old for _, old in rows] == [None, None]
    seq_before = store.max_seq()
    again = store.upsert_items("c", [ItemWrite("a", b"z", {"m": 1}, b"\x02")], 1)
    assert again[0] == (rows[0][0], rows[0][0])
    item = store.get_item("c", "a")
    assert item is not None and item.payload == b"z" and item.metadata == {"m": 1}
    assert item.seq > seq_before
    changed = [r.id for chunk in store.iter_items("c", after_seq=seq_before) for r in chunk]
    assert changed == ["a"]
    assert store.delete_item("c", "a") == rows[0][0]
    assert store.delete_item("c", "a") is None
    store.close()
    # reopened: the counter continues, nothing is lost
    reopened = SqliteStore(tmp_path / "db.sqlite3")
    assert reopened.max_seq() == store.max_seq()
    assert [k[1] for k in reopened.item_keys("c")] == ["b"]
    reopened.close()


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


def test_unfinished_jobs_are_failed_at_start(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "db.sqlite3")
    job = {
        "id": "j1",
        "collection": "c",
        "state": "training",
        "settings": {},
        "progress": {"epoch": 1},
        "created_at": 0.0,
    }
    store.put_job(job)
    store.put_job({**job, "id": "j2", "state": "succeeded"})
    assert store.fail_unfinished_jobs() == 1
    j1 = store.get_job("j1")
    assert j1 is not None and j1["state"] == "failed" and "restart" in j1["error"]
    j2 = store.get_job("j2")
    assert j2 is not None and j2["state"] == "succeeded"
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
