"""SQLite storage of collections, items (payload, metadata, code), model versions and jobs.

Durability: WAL journal plus ``synchronous=FULL`` by default, so a commit is fsynced to the WAL
before the request that made it is acknowledged. Every write is one transaction, so a rejected or
crashed request leaves nothing half-written. One connection, guarded by a lock, serves the whole
process; a retraining worker reads its snapshot through a read-only connection of its own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.store import (
    Codes,
    CollectionGone,
    CollectionRow,
    ItemRow,
    ItemWrite,
    NameTaken,
    Record,
    SnapshotRow,
    VersionMoved,
    VersionRecord,
    owner_alive,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS collections(
    name TEXT PRIMARY KEY,
    modality TEXT NOT NULL,
    spec TEXT NOT NULL,
    active_version INTEGER,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS items(
    num INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    payload BLOB NOT NULL,
    metadata TEXT NOT NULL,
    code BLOB,
    version INTEGER,
    seq INTEGER NOT NULL,
    UNIQUE(collection, id)
);
CREATE TABLE IF NOT EXISTS versions(
    collection TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    job_id TEXT,
    metrics TEXT NOT NULL,
    PRIMARY KEY(collection, version)
);
CREATE INDEX IF NOT EXISTS items_by_seq ON items(collection, seq);
CREATE TABLE IF NOT EXISTS deletions(
    seq INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    num INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counters(
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs(
    id TEXT PRIMARY KEY,
    collection TEXT NOT NULL,
    state TEXT NOT NULL,
    settings TEXT NOT NULL,
    progress TEXT NOT NULL,
    metrics TEXT,
    error TEXT,
    version INTEGER,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""


def connect(path: Path, synchronous: str = "FULL", readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        # as_uri percent-encodes the path: a '#' or '%' in it would otherwise end or garble it
        uri = f"{path.resolve().as_uri()}?mode=ro"
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


class SqliteStore:
    """All SQL lives here; callers see rows as frozen dataclasses."""

    def __init__(self, path: Path, synchronous: str = "FULL") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = connect(path, synchronous)
        self._lock = threading.RLock()
        self._conn.executescript(SCHEMA)
        with self.transaction() as c:
            if "owner" not in {r[1] for r in c.execute("PRAGMA table_info(jobs)")}:
                c.execute("ALTER TABLE jobs ADD COLUMN owner INTEGER")
            # the write sequence lives in the database, shared by every process that writes, and
            # never goes back, even when the newest items are deleted
            c.execute(
                "INSERT INTO counters(name, value) VALUES ('seq', (SELECT COALESCE(MAX(seq), 0)"
                " FROM items)) ON CONFLICT(name) DO NOTHING"
            )

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    # collections -------------------------------------------------------------------------
    def create_collection(self, name: str, modality: str, spec: dict[str, Any]) -> None:
        try:
            with self.transaction() as c:
                c.execute(
                    "INSERT INTO collections(name, modality, spec, active_version, created_at)"
                    " VALUES (?, ?, ?, NULL, ?)",
                    (name, modality, json.dumps(spec), time.time()),
                )
        except sqlite3.IntegrityError:
            raise NameTaken(name) from None

    def delete_collection(self, name: str) -> None:
        with self.transaction() as c:
            for table in ("items", "versions", "jobs"):
                c.execute(f"DELETE FROM {table} WHERE collection = ?", (name,))
            c.execute("DELETE FROM collections WHERE name = ?", (name,))

    def collections(self) -> list[CollectionRow]:
        rows = self._query(
            "SELECT name, modality, spec, active_version, created_at FROM collections ORDER BY name"
        )
        return [CollectionRow(r[0], r[1], json.loads(r[2]), r[3], r[4]) for r in rows]

    # items ---------------------------------------------------------------------------------
    def upsert_items(
        self, collection: str, items: Sequence[ItemWrite], version: int | None
    ) -> tuple[list[tuple[int, int | None]], int]:
        """Insert or overwrite; returns per item (num, the num it replaced or None), and the
        write's sequence number. ``version`` must be the collection's active model version
        (the codes' maker): else ``VersionMoved``, and nothing is written."""
        with self.transaction() as c:
            _check_active(c, collection, version)
            first_seq = _take_seqs(c, len(items)) - len(items) + 1
            stored = _nums_of(c, collection, [item.id for item in items])
            # new items take the next numbers themselves: AUTOINCREMENT's counter follows them
            row = c.execute("SELECT seq FROM sqlite_sequence WHERE name = 'items'").fetchone()
            next_num = (int(row[0]) if row else 0) + 1
            out: list[tuple[int, int | None]] = []
            inserts, updates = [], []
            for seq, item in enumerate(items, start=first_seq):
                meta = item.metadata_text
                old = stored.get(item.id)
                if old is None:  # an id named again later in the batch updates this row
                    row_values = (next_num, collection, item.id, item.payload, meta, item.code)
                    inserts.append((*row_values, version, seq))
                    out.append((next_num, None))
                    stored[item.id] = next_num
                    next_num += 1
                else:
                    updates.append((item.payload, meta, item.code, version, seq, old))
                    out.append((old, old))
            c.executemany(
                "INSERT INTO items(num, collection, id, payload, metadata, code, version, seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                inserts,
            )
            c.executemany(
                "UPDATE items SET payload = ?, metadata = ?, code = ?, version = ?, seq = ?"
                " WHERE num = ?",
                updates,
            )
        return out, first_seq + len(items) - 1

    def delete_item(self, collection: str, item_id: str) -> int | None:
        with self.transaction() as c:
            row = c.execute(
                "SELECT num FROM items WHERE collection = ? AND id = ?", (collection, item_id)
            ).fetchone()
            if row is None:
                return None
            c.execute("DELETE FROM items WHERE num = ?", (row[0],))
            c.execute(  # what other processes serving the collection follow
                "INSERT INTO deletions(seq, collection, num) VALUES (?, ?, ?)",
                (_take_seqs(c, 1), collection, row[0]),
            )
            return int(row[0])

    def changed_since(
        self, collection: str, after_seq: int
    ) -> tuple[list[ItemRow], list[tuple[int, int]]]:
        """Items written, and (seq, num) of items deleted, after ``after_seq``, in write order."""
        rows = self._query(
            "SELECT num, id, payload, metadata, code, seq, version FROM items"
            " WHERE collection = ? AND seq > ? ORDER BY seq",
            (collection, after_seq),
        )
        gone = self._query(
            "SELECT seq, num FROM deletions WHERE collection = ? AND seq > ? ORDER BY seq",
            (collection, after_seq),
        )
        return [_item(r) for r in rows], [(int(r[0]), int(r[1])) for r in gone]

    def outside_commits(self) -> int:
        """A number that changes whenever another connection commits (SQLite's data_version)."""
        return int(self._query("PRAGMA data_version")[0][0])

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the collection holds."""
        found: set[str] = set()
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                f"SELECT id FROM items WHERE collection = ? AND id IN ({marks})",
                (collection, *chunk),
            )
            found.update(r[0] for r in rows)
        return found

    def get_item(self, collection: str, item_id: str) -> ItemRow | None:
        rows = self._query(
            "SELECT num, id, payload, metadata, code, seq, version FROM items"
            " WHERE collection = ? AND id = ?",
            (collection, item_id),
        )
        return _item(rows[0]) if rows else None

    def iter_items(
        self, collection: str, after_seq: int = 0, chunk: int = 2000
    ) -> Iterator[list[ItemRow]]:
        """All items of a collection with seq > after_seq, in chunks ordered by num."""
        last = -1
        while True:
            rows = self._query(
                "SELECT num, id, payload, metadata, code, seq, version FROM items"
                " WHERE collection = ? AND seq > ? AND num > ? ORDER BY num LIMIT ?",
                (collection, after_seq, last, chunk),
            )
            if not rows:
                return
            items = [_item(r) for r in rows]
            last = items[-1].num
            yield items

    def item_keys(self, collection: str) -> list[tuple[int, str, str, bytes | None]]:
        """(num, id, metadata json, code) of every item, in no particular order: what the
        in-memory state needs (in the order of the (collection, seq) index: no sort of
        millions of rows at start-up)."""
        return self._query(
            "SELECT num, id, metadata, code FROM items WHERE collection = ?", (collection,)
        )

    def max_seq(self) -> int:
        return int(self._query("SELECT value FROM counters WHERE name = 'seq'")[0][0])

    def snapshot_reader(self, collection: str) -> SqliteSnapshot:
        return SqliteSnapshot(self.path, collection)

    def set_codes(
        self, collection: str, version: int, codes: Codes, active: int, record: Record = None
    ) -> None:
        """Store a whole version's codes and make it active, in one transaction; with
        ``record``, register the version in that same transaction, so a version can never be
        active without being listed (or listed and then deleted as a failed job's leftovers)."""
        with self.transaction() as c:
            c.executemany(
                "UPDATE items SET code = ?, version = ? WHERE num = ?",
                [(code, version, num) for num, code in codes],
            )
            c.execute(
                "UPDATE collections SET active_version = ? WHERE name = ?", (active, collection)
            )
            if record is not None:
                self._insert_version(c, collection, version, record)

    def write_codes(self, collection: str, version: int, codes: Codes, chunk: int = 5000) -> None:
        """Stage a version's codes ahead of ``set_codes``, in short transactions so writers of
        every collection interleave. Until the version is made active, rows whose ``version``
        differs from the active one are treated as having no code (``stale_nums``)."""
        for start in range(0, len(codes), chunk):
            with self.transaction() as c:
                c.executemany(
                    "UPDATE items SET code = ?, version = ? WHERE num = ? AND collection = ?",
                    [
                        (code, version, num, collection)
                        for num, code in codes[start : start + chunk]
                    ],
                )

    def stale_nums(self, collection: str, active: int) -> set[int]:
        """Items whose stored code is missing or was not made by the ``active`` version."""
        rows = self._query(
            "SELECT num FROM items WHERE collection = ? AND (code IS NULL OR version IS NOT ?)",
            (collection, active),
        )
        return {int(r[0]) for r in rows}

    def active_version(self, collection: str) -> int | None:
        rows = self._query("SELECT active_version FROM collections WHERE name = ?", (collection,))
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    # versions ------------------------------------------------------------------------------
    @staticmethod
    def _insert_version(
        c: sqlite3.Connection, collection: str, version: int, record: VersionRecord
    ) -> None:
        c.execute(
            "INSERT OR REPLACE INTO versions(collection, version, created_at, job_id, metrics)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                collection,
                version,
                time.time(),
                record.job_id,
                json.dumps(record.metrics, default=str),
            ),
        )

    def versions(self, collection: str) -> list[dict[str, Any]]:
        rows = self._query(
            "SELECT version, created_at, job_id, metrics FROM versions WHERE collection = ?"
            " ORDER BY version",
            (collection,),
        )
        return [
            {"version": r[0], "created_at": r[1], "job_id": r[2], "metrics": json.loads(r[3])}
            for r in rows
        ]

    # jobs ----------------------------------------------------------------------------------
    def put_job(self, job: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO jobs(id, collection, state, settings, progress, metrics,"
                " error, version, created_at, updated_at, owner)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job["id"],
                    job["collection"],
                    job["state"],
                    json.dumps(job["settings"]),
                    json.dumps(job["progress"]),
                    None if job.get("metrics") is None else json.dumps(job["metrics"], default=str),
                    job.get("error"),
                    job.get("version"),
                    job["created_at"],
                    time.time(),
                    job.get("owner"),
                ),
            )

    def claim_job(self, job: dict[str, Any]) -> str | None:
        """Record ``job`` (its ``owner`` the process running it) unless a live process already
        runs a job on its collection: then that job's id, and nothing is written. A job whose
        owner died is marked failed on the way."""
        with self.transaction() as c:
            rows = c.execute(
                "SELECT id, owner FROM jobs WHERE collection = ? AND state NOT IN"
                " ('succeeded', 'failed', 'cancelled')",
                (job["collection"],),
            ).fetchall()
            for job_id, owner in rows:
                if owner_alive(owner):
                    return str(job_id)
                _fail(c, "id = ?", (job_id,))
        self.put_job(job)
        return None

    def running_job(self, collection: str) -> str | None:
        """The id of a job a live process runs on ``collection``, if any."""
        rows = self._query(
            "SELECT id, owner FROM jobs WHERE collection = ? AND state NOT IN"
            " ('succeeded', 'failed', 'cancelled')",
            (collection,),
        )
        return next((str(job_id) for job_id, owner in rows if owner_alive(owner)), None)

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        rows = self._query(
            "SELECT id, collection, state, settings, progress, metrics, error, version,"
            " created_at, updated_at FROM jobs WHERE id = ?",
            (job_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return {
            "id": r[0],
            "collection": r[1],
            "state": r[2],
            "settings": json.loads(r[3]),
            "progress": json.loads(r[4]),
            "metrics": None if r[5] is None else json.loads(r[5]),
            "error": r[6],
            "version": r[7],
            "created_at": r[8],
            "updated_at": r[9],
        }

    def fail_unfinished_jobs(self) -> int:
        """Jobs whose process is gone cannot finish; mark them failed. Jobs that other live
        servers sharing the store run are theirs."""
        with self.transaction() as c:
            rows = c.execute(
                "SELECT id, owner FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'cancelled')"
            ).fetchall()
            dead = [job_id for job_id, owner in rows if not owner_alive(owner)]
            for job_id in dead:
                _fail(c, "id = ?", (job_id,))
            return len(dead)


@dataclass(frozen=True)
class SqliteSnapshot:
    """A collection's items as one statement sees them, read through a read-only connection of
    its own (WAL lets it read while the server writes)."""

    path: Path
    collection: str

    def read(self) -> list[SnapshotRow]:
        conn = connect(self.path, readonly=True)
        try:
            rows = conn.execute(
                "SELECT num, id, payload, seq FROM items WHERE collection = ? ORDER BY num",
                (self.collection,),
            ).fetchall()
        finally:
            conn.close()
        return [SnapshotRow(int(r[0]), r[1], bytes(r[2]), int(r[3])) for r in rows]


def _fail(c: sqlite3.Connection, where: str, args: tuple[Any, ...]) -> None:
    c.execute(
        f"UPDATE jobs SET state = 'failed', error = 'interrupted: its server stopped or restarted',"
        f" updated_at = ? WHERE {where}",
        (time.time(), *args),
    )


_IDS_PER_QUERY = 500  # under SQLite's bound on variables in one statement


def _nums_of(c: sqlite3.Connection, collection: str, ids: Sequence[str]) -> dict[str, int]:
    """The numbers of those of ``ids`` stored in ``collection``."""
    found: dict[str, int] = {}
    unique = list(dict.fromkeys(ids))
    for a in range(0, len(unique), _IDS_PER_QUERY):
        chunk = unique[a : a + _IDS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        rows = c.execute(
            f"SELECT id, num FROM items WHERE collection = ? AND id IN ({marks})",
            (collection, *chunk),
        )
        found.update((str(item_id), int(num)) for item_id, num in rows)
    return found


def _take_seqs(c: sqlite3.Connection, n: int) -> int:
    """Reserve ``n`` write sequence numbers inside a transaction; returns the last one."""
    row = c.execute(
        "UPDATE counters SET value = value + ? WHERE name = 'seq' RETURNING value", (n,)
    ).fetchone()
    return int(row[0])


def _check_active(c: sqlite3.Connection, collection: str, version: int | None) -> None:
    row = c.execute("SELECT active_version FROM collections WHERE name = ?", (collection,))
    found = row.fetchone()
    if found is None:
        raise CollectionGone(collection)
    if version is not None and found[0] != version:  # items without codes are never wrong
        raise VersionMoved(collection)


def _item(r: tuple[Any, ...]) -> ItemRow:
    return ItemRow(int(r[0]), r[1], bytes(r[2]), json.loads(r[3]), r[4], int(r[5]), r[6])
