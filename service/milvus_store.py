"""``MilvusStore``: the ``ItemStore`` on Milvus (a server, a cluster, or Milvus Lite in one file).

Layout:
- one Milvus collection of items per Bitseek collection (``bitseek_items_<name>``): ``num``
  (primary key), ``id`` and its 64-bit hash ``key`` (rows are found by id through the hash, so
  no id is ever quoted into a filter), ``metadata`` (JSON), ``code`` (hex of the packed code,
  empty when none) with the ``version`` that made it, ``seq``, and the payload: text and vectors
  inline (text as is, vectors base64) when they fit a VARCHAR, images and anything larger in a
  file under ``<data_dir>/payloads/<collection>/`` written atomically;
- one ``bitseek_meta`` collection for everything else, one row per record under a ``key``:
  ``collection/<name>``, ``version/<name>/<v>``, ``job/<id>``, ``deletion/<seq>`` and the
  ``counters`` row (the write sequence, the next item number, the commit count);
- codes are searched in ``MilvusIndex`` collections (one per serving index), not here: a version
  being staged rewrites the codes here while the previous version keeps serving.

Milvus has no multi-row transactions. Writes are ordered so that a crash leaves what a crash of
the SQLite store between two of its transactions leaves: numbers and sequence numbers are
reserved first, then files, then rows; ``set_codes`` writes codes, then the version record, and
makes the version active last. Read-modify-write of rows and counters is serialised by one lock
per store object, which is enough for one process (Milvus Lite opens its file from one process
only); see docs/ARCHITECTURE.md, "Scaling out", for what several processes on a server need.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.milvus_client import (
    DUMMY,
    MAX_LIMIT,
    MAX_VARCHAR,
    STRONG,
    MilvusLimit,
    add_dummy_vector,
    check_varchar,
    connect,
    disconnect,
    id_key,
    int_list,
    is_lite,
)
from service.store import (
    HOST,
    Codes,
    CollectionGone,
    CollectionRow,
    ItemRow,
    ItemWrite,
    NameTaken,
    Record,
    SnapshotRow,
    VersionMoved,
    holder_alive,
)
from training.durable import fsync_path, make_dirs

META = "bitseek_meta"
ITEMS_PREFIX = "bitseek_items_"
MAX_ID_BYTES = 1024
MAX_CODE_HEX = 512  # 2048-bit codes
FINISHED = ("succeeded", "failed", "cancelled")
# item numbers per query when a whole collection is read: measured on Milvus Lite 2.5, a query
# without a limit returns at most 16,383 rows, silently, so a window never reaches that
_WINDOW = MAX_LIMIT // 2
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ESCAPES = {"_": "_u", ".": "_d", "-": "_h"}


def _safe(name: str) -> str:
    """A collection name, checked before it is quoted into a filter."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"collection name {name!r} has characters outside [A-Za-z0-9_.-]")
    return name


def items_collection(name: str) -> str:
    """The Milvus name of a Bitseek collection's items (Milvus allows letters, digits, '_').
    Collection names are quoted into filters, so only the registry's characters pass."""
    return ITEMS_PREFIX + re.sub(r"[_.-]", lambda m: _ESCAPES[m.group()], _safe(name))


class MilvusStore:
    """Rows as frozen dataclasses, like ``SqliteStore``; every read is Strong."""

    def __init__(
        self,
        uri: str,
        data_dir: Path,
        token: str | None = None,
        timeout: float = 30.0,
        client: Any = None,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.token = token
        self.timeout = timeout
        self.data_dir = data_dir
        self.path = Path(uri) if is_lite(uri) else data_dir
        self.client = client if client is not None else connect(uri, token, timeout)
        self._lock = threading.RLock()
        self._own_commits = 0
        self._modality: dict[str, str] = {}
        if not self.client.has_collection(META, timeout=timeout):
            self._create_meta()

    def close(self) -> None:
        with self._lock:
            disconnect(self.client, self.uri)

    # Milvus plumbing ---------------------------------------------------------------------
    def _create_meta(self) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=512)
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        schema.add_field("coll", DataType.VARCHAR, max_length=64)
        schema.add_field("n", DataType.INT64)
        schema.add_field("doc", DataType.VARCHAR, max_length=MAX_VARCHAR)
        params = self.client.prepare_index_params()
        add_dummy_vector(schema, params)
        self.client.create_collection(
            META, schema=schema, index_params=params, consistency_level=STRONG, timeout=self.timeout
        )

    def _create_items(self, name: str) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("num", DataType.INT64, is_primary=True)
        schema.add_field("key", DataType.INT64)
        schema.add_field("id", DataType.VARCHAR, max_length=MAX_ID_BYTES)
        schema.add_field("payload", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("stored", DataType.VARCHAR, max_length=8)  # text | b64 | file
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("code", DataType.VARCHAR, max_length=MAX_CODE_HEX)
        schema.add_field("version", DataType.INT64)  # -1: none
        schema.add_field("seq", DataType.INT64)
        params = self.client.prepare_index_params()
        add_dummy_vector(schema, params)
        params.add_index("key", index_type="INVERTED")
        self.client.create_collection(
            items_collection(name),
            schema=schema,
            index_params=params,
            consistency_level=STRONG,
            timeout=self.timeout,
        )

    def _query(
        self, collection: str, expr: str, fields: list[str], limit: int | None = None
    ) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"limit": limit} if limit is not None else {}
        rows: list[dict[str, Any]] = self.client.query(
            collection,
            filter=expr,
            output_fields=fields,
            consistency_level=STRONG,
            timeout=self.timeout,
            **kwargs,
        )
        return rows

    def _scan(self, name: str, expr: str, fields: list[str]) -> Iterator[list[dict[str, Any]]]:
        """Rows of a collection's items matching ``expr``, by windows of item numbers (each
        window holds at most ``MAX_LIMIT`` rows), in number order."""
        if not self.client.has_collection(items_collection(name), timeout=self.timeout):
            return
        end = self._counters()["num"]
        for first in range(0, end + 1, _WINDOW):
            where = f"num >= {first} and num < {first + _WINDOW}"
            rows = self._query(
                items_collection(name), f"{where} and ({expr})" if expr else where, fields
            )
            if rows:
                yield sorted(rows, key=lambda r: int(r["num"]))

    def _meta(self, expr: str) -> list[dict[str, Any]]:
        return self._query(META, expr, ["key", "kind", "coll", "n", "doc"])

    def _put_meta(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            check_varchar(row["doc"], f"the {row['kind']} record {row['key']!r}")
        self.client.upsert(META, [{**row, "v": DUMMY} for row in rows], timeout=self.timeout)

    def _counters(self) -> dict[str, int]:
        rows = self._meta('key == "counters"')
        found = json.loads(rows[0]["doc"]) if rows else {}
        return {"seq": 0, "num": 0, "commits": 0, **found}

    def _bump(self, seqs: int = 0, nums: int = 0) -> dict[str, int]:
        """Reserve ``seqs`` sequence numbers and ``nums`` item numbers and count one commit;
        returns the counters after (``seq``: the last reserved, ``num``: the next free - 1)."""
        counters = self._counters()
        counters["seq"] += seqs
        counters["num"] += nums
        counters["commits"] += 1
        self._own_commits += 1
        doc = json.dumps(counters)
        self._put_meta([{"key": "counters", "kind": "counter", "coll": "", "n": 0, "doc": doc}])
        return counters

    def _collection_doc(self, name: str) -> dict[str, Any] | None:
        rows = self._meta(f'key == "collection/{_safe(name)}"')
        return json.loads(rows[0]["doc"]) if rows else None

    def _payload_dir(self, collection: str) -> Path:
        return self.data_dir / "payloads" / collection

    # collections -------------------------------------------------------------------------
    def create_collection(self, name: str, modality: str, spec: dict[str, Any]) -> None:
        with self._lock:
            if self._collection_doc(name) is not None:
                raise NameTaken(name)
            doc: dict[str, Any] = {"modality": modality, "spec": spec, "active_version": None}
            doc["created_at"] = time.time()
            if self.client.has_collection(items_collection(name), timeout=self.timeout):
                self.client.drop_collection(items_collection(name), timeout=self.timeout)
            self._create_items(name)
            self._put_meta(
                [
                    {
                        "key": f"collection/{name}",
                        "kind": "collection",
                        "coll": name,
                        "n": 0,
                        "doc": json.dumps(doc),
                    }
                ]
            )
            self._bump()

    def delete_collection(self, name: str) -> None:
        with self._lock:
            self.client.delete(META, filter=f'key == "collection/{name}"', timeout=self.timeout)
            self.client.delete(META, filter=f'coll == "{_safe(name)}"', timeout=self.timeout)
            self.client.drop_collection(items_collection(name), timeout=self.timeout)
            self._modality.pop(name, None)
            shutil.rmtree(self._payload_dir(name), ignore_errors=True)
            self._bump()

    def collections(self) -> list[CollectionRow]:
        rows = []
        for row in self._meta('kind == "collection"'):
            doc = json.loads(row["doc"])
            rows.append(
                CollectionRow(
                    row["coll"],
                    doc["modality"],
                    doc["spec"],
                    doc["active_version"],
                    doc["created_at"],
                )
            )
        return sorted(rows, key=lambda r: r.name)

    # items -----------------------------------------------------------------------------------
    def upsert_items(
        self, collection: str, items: Sequence[ItemWrite], version: int | None
    ) -> tuple[list[tuple[int, int | None]], int]:
        with self._lock:
            doc = self._collection_doc(collection)
            if doc is None:
                raise CollectionGone(collection)
            if version is not None and doc["active_version"] != version:
                raise VersionMoved(collection)
            for item in items:
                _check_item(item)
            found = self._nums_of(collection, [item.id for item in items])
            new_ids = list(dict.fromkeys(i.id for i in items if i.id not in found))
            counters = self._bump(seqs=len(items), nums=len(new_ids))
            first_num = counters["num"] - len(new_ids) + 1
            nums = {**found, **{item_id: first_num + i for i, item_id in enumerate(new_ids)}}
            seq = counters["seq"] - len(items)
            out: list[tuple[int, int | None]] = []
            rows: dict[int, dict[str, Any]] = {}
            seen: set[str] = set()
            for item in items:
                seq += 1
                num = nums[item.id]
                out.append((num, num if item.id in found or item.id in seen else None))
                seen.add(item.id)
                stored, payload = self._place_payload(collection, doc["modality"], num, item)
                rows[num] = {
                    "num": num,
                    "key": id_key(item.id),
                    "id": item.id,
                    "payload": payload,
                    "stored": stored,
                    "metadata": item.metadata,
                    "code": item.code.hex() if item.code is not None else "",
                    "version": version if version is not None else -1,
                    "seq": seq,
                    "v": DUMMY,
                }
            self.client.upsert(
                items_collection(collection), list(rows.values()), timeout=self.timeout
            )
            for row in rows.values():
                if row["stored"] != "file":  # a payload that moved inline leaves no file
                    self._payload_file(collection, row["num"]).unlink(missing_ok=True)
        return out, seq

    def _place_payload(
        self, collection: str, modality: str, num: int, item: ItemWrite
    ) -> tuple[str, str]:
        """Where an item's payload goes: (``stored``, the VARCHAR value)."""
        if modality == "text":
            try:
                text = item.payload.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is not None and len(item.payload) <= MAX_VARCHAR and "\x00" not in text:
                return "text", text
        elif modality != "image" and len(item.payload) * 4 // 3 + 4 <= MAX_VARCHAR:
            return "b64", base64.b64encode(item.payload).decode("ascii")
        _write_atomic(self._payload_file(collection, num), item.payload)
        return "file", ""

    def _payload_file(self, collection: str, num: int) -> Path:
        return self._payload_dir(collection) / f"{num}.bin"

    def _payload(self, collection: str, row: dict[str, Any]) -> bytes:
        if row["stored"] == "text":
            return str(row["payload"]).encode("utf-8")
        if row["stored"] == "b64":
            return base64.b64decode(row["payload"])
        return self._payload_file(collection, int(row["num"])).read_bytes()

    def _nums_of(self, collection: str, ids: Sequence[str]) -> dict[str, int]:
        """num of each id the collection holds."""
        out: dict[str, int] = {}
        wanted = set(ids)
        keys = sorted({id_key(i) for i in wanted})
        for start in range(0, len(keys), 1000):
            rows = self._query(
                items_collection(collection),
                f"key in {int_list(keys[start : start + 1000])}",
                ["num", "id"],
            )
            out.update((r["id"], int(r["num"])) for r in rows if r["id"] in wanted)
        return out

    def _rows_by_id(self, collection: str, item_id: str) -> list[dict[str, Any]]:
        rows = self._query(
            items_collection(collection), f"key == {id_key(item_id)}", list(_ITEM_FIELDS)
        )
        return [r for r in rows if r["id"] == item_id]

    def delete_item(self, collection: str, item_id: str) -> int | None:
        with self._lock:
            if self._collection_doc(collection) is None:
                return None
            rows = self._rows_by_id(collection, item_id)
            if not rows:
                return None
            num = int(rows[0]["num"])
            seq = self._bump(seqs=1)["seq"]
            self._put_meta(
                [
                    {
                        "key": f"deletion/{seq:020d}",
                        "kind": "deletion",
                        "coll": collection,
                        "n": seq,
                        "doc": str(num),
                    }
                ]
            )
            self.client.delete(items_collection(collection), ids=[num], timeout=self.timeout)
            self._payload_file(collection, num).unlink(missing_ok=True)
            return num

    def changed_since(
        self, collection: str, after_seq: int
    ) -> tuple[list[ItemRow], list[tuple[int, int]]]:
        rows = [row for chunk in self.iter_items(collection, after_seq) for row in chunk]
        gone = self._meta(
            f'kind == "deletion" and coll == "{_safe(collection)}" and n > {int(after_seq)}'
        )
        return (
            sorted(rows, key=lambda r: r.seq),
            sorted((int(g["n"]), int(g["doc"])) for g in gone),
        )

    def outside_commits(self) -> int:
        """Commits by other stores on this Milvus: all counted commits less this one's."""
        with self._lock:
            return self._counters()["commits"] - self._own_commits

    def existing_ids(self, collection: str, ids: Sequence[str]) -> set[str]:
        if not self.client.has_collection(items_collection(collection), timeout=self.timeout):
            return set()
        return set(self._nums_of(collection, ids))

    def get_item(self, collection: str, item_id: str) -> ItemRow | None:
        if not self.client.has_collection(items_collection(collection), timeout=self.timeout):
            return None
        rows = self._rows_by_id(collection, item_id)
        return self._item(collection, rows[0]) if rows else None

    def iter_items(
        self, collection: str, after_seq: int = 0, chunk: int = 2000
    ) -> Iterator[list[ItemRow]]:
        """All items with seq > after_seq, in chunks ordered by num."""
        pending: list[ItemRow] = []
        for rows in self._scan(collection, f"seq > {after_seq}", list(_ITEM_FIELDS)):
            pending += [self._item(collection, r) for r in rows]
            while len(pending) >= chunk:
                yield pending[:chunk]
                pending = pending[chunk:]
        if pending:
            yield pending

    def item_keys(self, collection: str) -> list[tuple[int, str, str, bytes | None]]:
        return [
            (int(r["num"]), r["id"], json.dumps(r["metadata"]), _code(r))
            for rows in self._scan(collection, "", ["num", "id", "metadata", "code"])
            for r in rows
        ]

    def max_seq(self) -> int:
        return self._counters()["seq"]

    def snapshot_reader(self, collection: str) -> MilvusSnapshot:
        if is_lite(self.uri):  # no second process may open the file: read it now, here
            rows = [
                SnapshotRow(r.num, r.id, r.payload, r.seq)
                for chunk in self.iter_items(collection)
                for r in chunk
            ]
            path = self.data_dir / "snapshots" / f"{uuid.uuid4().hex}.pickle"
            _write_atomic(path, pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))
            return MilvusSnapshot(self.uri, self.token, self.data_dir, collection, path)
        return MilvusSnapshot(self.uri, self.token, self.data_dir, collection, None)

    # codes and model versions ----------------------------------------------------------------
    def set_codes(
        self, collection: str, version: int, codes: Codes, active: int, record: Record = None
    ) -> None:
        """Store codes, register ``record``, make ``active`` the active version: in that order,
        so the version is never active without its codes and its record."""
        with self._lock:
            self._rewrite_codes(collection, version, codes)
            if record is not None:
                doc: dict[str, Any] = {"created_at": time.time(), "job_id": record.job_id}
                doc["metrics"] = record.metrics
                self._put_meta(
                    [
                        {
                            "key": f"version/{collection}/{version}",
                            "kind": "version",
                            "coll": collection,
                            "n": version,
                            "doc": json.dumps(doc, default=str),
                        }
                    ]
                )
            found = self._collection_doc(collection)
            if found is None:
                raise CollectionGone(collection)
            found["active_version"] = active
            self._put_meta(
                [
                    {
                        "key": f"collection/{collection}",
                        "kind": "collection",
                        "coll": collection,
                        "n": 0,
                        "doc": json.dumps(found),
                    }
                ]
            )
            self._bump()

    def write_codes(self, collection: str, version: int, codes: Codes, chunk: int = 5000) -> None:
        for start in range(0, len(codes), chunk):
            with self._lock:  # writers of every collection interleave between chunks
                self._rewrite_codes(collection, version, codes[start : start + chunk])
                self._bump()

    def _rewrite_codes(self, collection: str, version: int, codes: Codes) -> None:
        """Milvus 2.5 has no partial update: read the rows, change code and version, upsert
        them whole (seq unchanged, as an UPDATE of the code column leaves it). Rows deleted
        meanwhile are not written back."""
        fresh = {int(num): code.hex() for num, code in codes}
        nums = sorted(fresh)
        for start in range(0, len(nums), 2000):
            part = nums[start : start + 2000]
            rows = self._query(
                items_collection(collection), f"num in {int_list(part)}", list(_ITEM_FIELDS)
            )
            for row in rows:
                row["code"] = check_varchar(fresh[int(row["num"])], "code", MAX_CODE_HEX)
                row["version"] = version
                row["v"] = DUMMY
            if rows:
                self.client.upsert(items_collection(collection), rows, timeout=self.timeout)

    def stale_nums(self, collection: str, active: int) -> set[int]:
        expr = f'code == "" or version != {int(active)}'
        return {int(r["num"]) for rows in self._scan(collection, expr, ["num"]) for r in rows}

    def active_version(self, collection: str) -> int | None:
        doc = self._collection_doc(collection)
        return None if doc is None or doc["active_version"] is None else int(doc["active_version"])

    def versions(self, collection: str) -> list[dict[str, Any]]:
        out = []
        for row in self._meta(f'kind == "version" and coll == "{_safe(collection)}"'):
            doc = json.loads(row["doc"])
            out.append(
                {
                    "version": int(row["n"]),
                    "created_at": doc["created_at"],
                    "job_id": doc["job_id"],
                    "metrics": doc["metrics"],
                }
            )
        return sorted(out, key=lambda v: v["version"])

    # jobs --------------------------------------------------------------------------------------
    def put_job(self, job: dict[str, Any]) -> None:
        with self._lock:
            doc = {
                key: job.get(key)
                for key in (
                    "id",
                    "collection",
                    "state",
                    "settings",
                    "progress",
                    "metrics",
                    "error",
                    "version",
                    "created_at",
                    "owner",
                    "host",
                )
            }
            doc["host"] = doc["host"] or HOST  # a server records its own jobs
            doc["updated_at"] = time.time()
            self._put_meta(
                [
                    {
                        "key": f"job/{job['id']}",
                        "kind": "job",
                        "coll": job["collection"],
                        "n": 0,
                        "doc": json.dumps(doc, default=str),
                    }
                ]
            )
            self._bump()

    def claim_job(self, job: dict[str, Any]) -> str | None:
        with self._lock:
            for other in self._jobs(f'coll == "{_safe(job["collection"])}"'):
                if other["state"] in FINISHED:
                    continue
                if holder_alive(other):
                    return str(other["id"])
                self._fail(other)
            self.put_job(job)
            return None

    def running_job(self, collection: str) -> str | None:
        for job in self._jobs(f'coll == "{_safe(collection)}"'):
            if job["state"] not in FINISHED and holder_alive(job):
                return str(job["id"])
        return None

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,128}", job_id):
            return None  # never quoted into a filter; no job has such an id
        found = self._jobs(f'key == "job/{job_id}"')
        if not found:
            return None
        return {k: v for k, v in found[0].items() if k not in ("owner", "host")}

    def fail_unfinished_jobs(self) -> int:
        with self._lock:
            dead = [
                job
                for job in self._jobs("")
                if job["state"] not in FINISHED and not holder_alive(job)
            ]
            for job in dead:
                self._fail(job)
            return len(dead)

    def _jobs(self, expr: str) -> list[dict[str, Any]]:
        where = f'kind == "job" and ({expr})' if expr else 'kind == "job"'
        return [json.loads(row["doc"]) for row in self._meta(where)]

    def _fail(self, job: dict[str, Any]) -> None:
        job = {**job, "state": "failed"}
        job["error"] = "interrupted: its server stopped or restarted"
        self.put_job(job)

    # rows ------------------------------------------------------------------------------------
    def _item(self, collection: str, r: dict[str, Any]) -> ItemRow:
        version = int(r["version"])
        return ItemRow(
            int(r["num"]),
            r["id"],
            self._payload(collection, r),
            r["metadata"] if isinstance(r["metadata"], dict) else {},
            _code(r),
            int(r["seq"]),
            None if version < 0 else version,
        )


_ITEM_FIELDS = ("num", "id", "key", "payload", "stored", "metadata", "code", "version", "seq")


@dataclass(frozen=True)
class MilvusSnapshot:
    """A collection's items for a retraining worker. On Milvus Lite the server read them into
    ``path`` (a second process cannot open the file); on a server the worker reads them."""

    uri: str
    token: str | None
    data_dir: Path
    collection: str
    path: Path | None

    def read(self) -> list[SnapshotRow]:
        if self.path is not None:
            try:
                rows: list[SnapshotRow] = pickle.loads(self.path.read_bytes())
            finally:
                self.path.unlink(missing_ok=True)
            return rows
        store = MilvusStore(self.uri, self.data_dir, self.token)
        try:
            return [
                SnapshotRow(r.num, r.id, r.payload, r.seq)
                for chunk in store.iter_items(self.collection)
                for r in chunk
            ]
        finally:
            store.close()


def _check_item(item: ItemWrite) -> None:
    check_varchar(item.id, f"item id {item.id[:40]!r}", MAX_ID_BYTES)
    check_varchar(json.dumps(item.metadata), f"metadata of item {item.id[:40]!r}")
    if item.code is not None and len(item.code) * 2 > MAX_CODE_HEX:
        raise MilvusLimit(f"code of item {item.id[:40]!r} is {len(item.code)} bytes")


def _code(r: dict[str, Any]) -> bytes | None:
    return bytes.fromhex(r["code"]) if r["code"] else None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write a file so readers see the old or the new one whole: temp file, fsync, rename."""
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
