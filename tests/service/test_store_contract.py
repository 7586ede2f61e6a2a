"""The ``ItemStore`` contract, run against both backends (SQLite and Milvus Lite)."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from service.store import (
    CollectionGone,
    ItemStore,
    ItemWrite,
    NameTaken,
    VersionMoved,
    VersionRecord,
)
from tests.service.backends import open_store


def test_collections_are_created_listed_and_deleted(store: ItemStore) -> None:
    store.create_collection("b.x-y_z", "text", {"bits": 16, "description": "d"})
    store.create_collection("a", "image", {"bits": 8, "image_shape": [2, 2]})
    with pytest.raises(NameTaken):
        store.create_collection("a", "text", {})
    rows = store.collections()
    assert [r.name for r in rows] == ["a", "b.x-y_z"]
    assert rows[1].spec == {"bits": 16, "description": "d"} and rows[1].modality == "text"
    assert rows[0].active_version is None and rows[0].created_at > 0
    store.upsert_items("a", [ItemWrite("i", bytes(4), {}, None)], None)
    store.delete_collection("a")
    assert [r.name for r in store.collections()] == ["b.x-y_z"]
    assert store.get_item("a", "i") is None
    store.create_collection("a", "text", {})  # the name is free again, and empty
    assert store.item_keys("a") == []


def test_upsert_keeps_num_and_bumps_seq(store: ItemStore) -> None:
    store.create_collection("c", "text", {})
    store.set_codes("c", 1, [], active=1)
    rows, seq = store.upsert_items(
        "c", [ItemWrite("a", b"x", {}, b"\x01"), ItemWrite("b", b"y", {}, None)], 1
    )
    assert [old for _, old in rows] == [None, None] and rows[0][0] != rows[1][0]
    seq_before = store.max_seq()
    assert seq == seq_before
    again, _ = store.upsert_items("c", [ItemWrite("a", b"z", {"m": 1}, b"\x02")], 1)
    assert again[0] == (rows[0][0], rows[0][0])
    item = store.get_item("c", "a")
    assert item is not None and item.payload == b"z" and item.metadata == {"m": 1}
    assert item.code == b"\x02" and item.version == 1 and item.seq > seq_before
    assert item.code_under(1) == b"\x02" and item.code_under(2) is None
    changed = [r.id for chunk in store.iter_items("c", after_seq=seq_before) for r in chunk]
    assert changed == ["a"]
    assert store.delete_item("c", "a") == rows[0][0]
    assert store.delete_item("c", "a") is None
    assert store.existing_ids("c", ["a", "b", "q"]) == {"b"}


def test_large_mixed_batches_keep_old_numbers_and_never_reuse_one(store: ItemStore) -> None:
    store.create_collection("c", "text", {})
    first, _ = store.upsert_items("c", [ItemWrite(f"i{k}", b"x", {}, None) for k in range(1200)],
                                  None)  # fmt: skip
    nums = {f"i{k}": num for k, (num, _) in enumerate(first)}
    assert store.delete_item("c", "i1199") == nums["i1199"]  # the highest number so far
    batch = [ItemWrite(f"i{k}", b"y", {"k": k}, None) for k in range(600, 1800)]
    rows, seq = store.upsert_items("c", batch, None)
    for item, (num, old) in zip(batch, rows, strict=True):
        if item.id in nums and item.id != "i1199":
            assert num == old == nums[item.id]
        else:
            assert old is None and num > nums["i1199"]
    assert len({num for num, _ in rows}) == 1200 and seq == store.max_seq()
    assert len(store.item_keys("c")) == 1800
    stored = store.get_item("c", "i700")
    assert stored is not None and stored.metadata == {"k": 700}
    assert stored.seq == seq - 1099  # the 101st of the batch's 1,200 writes


def test_a_batch_that_names_an_id_twice_keeps_the_last(store: ItemStore) -> None:
    store.create_collection("c", "text", {})
    rows, _ = store.upsert_items(
        "c", [ItemWrite("a", b"1", {}, None), ItemWrite("a", b"2", {"n": 2}, None)], None
    )
    assert rows[1] == (rows[0][0], rows[0][0])
    item = store.get_item("c", "a")
    assert item is not None and item.payload == b"2" and item.metadata == {"n": 2}
    assert len(store.item_keys("c")) == 1


def test_everything_survives_a_reopen(backend: str, tmp_path: Path) -> None:
    first = open_store(backend, tmp_path)
    first.create_collection("c", "text", {"bits": 8})
    first.upsert_items("c", [ItemWrite("a", b"x", {}, None), ItemWrite("b", b"y", {}, None)], None)
    first.delete_item("c", "a")
    first.set_codes("c", 1, [], active=1, record=VersionRecord({"loss": 0.5}, "job1"))
    last = first.max_seq()
    first.close()
    again = open_store(backend, tmp_path)
    try:
        assert again.max_seq() == last  # the counter continues, nothing is lost
        assert [k[1] for k in again.item_keys("c")] == ["b"]
        assert again.active_version("c") == 1
        assert [v["job_id"] for v in again.versions("c")] == ["job1"]
        _, seq = again.upsert_items("c", [ItemWrite("d", b"z", {}, None)], None)
        assert seq == last + 1
    finally:
        again.close()


@pytest.mark.parametrize(
    ("modality", "payload"),
    [
        ("text", "ünïcødé \x00 \"quoted\" 'single' \\ back".encode()),
        ("text", ("é" * 40_000).encode()),  # 80,000 bytes: more than a Milvus VARCHAR holds
        ("image", bytes(range(256)) * 64),
        ("vector", bytes(range(256)) * 16),
        ("vector", bytes(range(256)) * 300),
    ],
)
def test_payloads_and_odd_ids_round_trip(store: ItemStore, modality: str, payload: bytes) -> None:
    store.create_collection("c", modality, {})
    ids = ["ünï", 'q"uote', "back\\slash", "nul\x00byte", "x in [1]", "k" * 256]
    meta = {"s": "ü", "b": True, "n": None, "f": 1.5, "i": -3}
    store.upsert_items("c", [ItemWrite(i, payload, meta, None) for i in ids], None)
    for item_id in ids:
        row = store.get_item("c", item_id)
        assert row is not None and row.id == item_id and row.payload == payload
        assert row.metadata == meta
    assert store.existing_ids("c", [*ids, "missing"]) == set(ids)
    snapshot = pickle.loads(pickle.dumps(store.snapshot_reader("c")))  # goes to a worker
    read = snapshot.read()
    assert sorted(r.id for r in read) == sorted(ids) and {r.payload for r in read} == {payload}


def test_iter_items_and_item_keys_order_by_num(store: ItemStore) -> None:
    store.create_collection("c", "text", {})
    ids = [f"i{n:03d}" for n in range(250)]
    for start in range(0, 250, 100):
        store.upsert_items(
            "c", [ItemWrite(i, i.encode(), {"n": i}, None) for i in ids[start : start + 100]], None
        )
    chunks = list(store.iter_items("c", chunk=64))
    assert [len(c) for c in chunks] == [64, 64, 64, 58]
    nums = [r.num for c in chunks for r in c]
    assert nums == sorted(nums) and [r.id for c in chunks for r in c] == ids
    keys = store.item_keys("c")
    assert [k[0] for k in keys] == nums and [k[1] for k in keys] == ids
    assert keys[0][2] in ('{"n": "i000"}', '{"n":"i000"}') and keys[0][3] is None


def test_writes_check_the_active_version_and_log_deletions(store: ItemStore) -> None:
    store.create_collection("c", "text", {})
    with pytest.raises(VersionMoved):  # codes of a version that is not the active one
        store.upsert_items("c", [ItemWrite("a", b"x", {}, b"\x01")], 1)
    assert store.item_keys("c") == []
    with pytest.raises(CollectionGone):
        store.upsert_items("nope", [ItemWrite("a", b"x", {}, None)], None)
    (num_a, _), (num_b, _) = store.upsert_items(
        "c", [ItemWrite("a", b"x", {}, None), ItemWrite("b", b"y", {}, None)], None
    )[0]
    after_writes = store.max_seq()
    assert store.delete_item("c", "a") == num_a
    rows, gone = store.changed_since("c", 0)
    assert [r.id for r in rows] == ["b"] and [num for _, num in gone] == [num_a]
    assert gone[0][0] > after_writes == store.max_seq() - 1
    assert store.changed_since("c", store.max_seq()) == ([], [])
    rows, _ = store.upsert_items("c", [ItemWrite("a", b"again", {}, None)], None)
    assert rows[0][0] not in (num_a, num_b)  # a deleted item's number is never used again


def test_own_commits_are_not_outside_commits(store: ItemStore) -> None:
    mine = store.outside_commits()
    store.create_collection("c", "text", {})
    store.upsert_items("c", [ItemWrite("c", b"z", {}, None)], None)
    store.delete_item("c", "c")
    assert store.outside_commits() == mine


def test_codes_are_staged_then_activated_with_their_record(store: ItemStore) -> None:
    store.create_collection("c", "text", {})
    rows, _ = store.upsert_items(
        "c", [ItemWrite(i, i.encode(), {}, None) for i in ("a", "b", "c")], None
    )
    nums = [num for num, _ in rows]
    store.set_codes("c", 1, [(n, bytes([n])) for n in nums], active=1)
    assert store.active_version("c") == 1 and store.stale_nums("c", 1) == set()
    seq = store.max_seq()
    store.write_codes("c", 2, [(nums[0], b"\xaa\xbb")], chunk=1)  # staged, not active
    assert store.active_version("c") == 1
    assert store.stale_nums("c", 1) == {nums[0]} and store.stale_nums("c", 2) == set(nums[1:])
    staged = store.get_item("c", "a")
    assert staged is not None and staged.code_under(1) is None and staged.seq <= seq
    store.set_codes(
        "c",
        2,
        [(n, b"\x01\x02") for n in nums[1:]],
        active=2,
        record=VersionRecord({"loss": 0.25, "rates": [0.5, 0.5]}, "job-9"),
    )
    assert store.active_version("c") == 2 and store.stale_nums("c", 2) == set()
    assert [(v["version"], v["job_id"], v["metrics"]) for v in store.versions("c")] == [
        (2, "job-9", {"loss": 0.25, "rates": [0.5, 0.5]})
    ]
    assert store.versions("other") == [] and store.active_version("other") is None
    keys = {k[1]: k[3] for k in store.item_keys("c")}
    assert keys == {"a": b"\xaa\xbb", "b": b"\x01\x02", "c": b"\x01\x02"}
    store.write_codes("c", 3, [(987_654, b"\x00")])  # a deleted item's code is dropped
    assert store.get_item("c", "a") is not None and len(store.item_keys("c")) == 3


def _job(job_id: str, state: str = "training", owner: int | None = None) -> dict[str, object]:
    return {
        "id": job_id,
        "collection": "c",
        "state": state,
        "settings": {"bits": 16},
        "progress": {"epoch": 1},
        "created_at": 0.0,
        "owner": owner,
    }


def test_unfinished_jobs_are_failed_at_start(store: ItemStore) -> None:
    store.put_job(_job("j1"))
    store.put_job(_job("j2", "succeeded"))
    assert store.fail_unfinished_jobs() == 1
    j1 = store.get_job("j1")
    assert j1 is not None and j1["state"] == "failed" and "restart" in j1["error"]
    assert j1["settings"] == {"bits": 16} and j1["progress"] == {"epoch": 1}
    j2 = store.get_job("j2")
    assert j2 is not None and j2["state"] == "succeeded" and j2["updated_at"] > 0
    assert store.get_job("nope") is None and store.get_job('x" or kind != "') is None


def test_one_job_per_collection_until_its_owner_dies(store: ItemStore) -> None:
    assert store.claim_job(_job("j1", owner=os.getpid())) is None
    assert store.claim_job(_job("j2", owner=os.getpid())) == "j1"
    assert store.running_job("c") == "j1" and store.fail_unfinished_jobs() == 0
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.put_job(_job("j1", owner=dead.pid))  # its process is gone: the lease is free
    assert store.running_job("c") is None
    assert store.claim_job(_job("j3", owner=os.getpid())) is None
    failed = store.get_job("j1")
    assert failed is not None and failed["state"] == "failed"


def test_a_collection_larger_than_one_milvus_page_is_read_whole(store: ItemStore) -> None:
    """Reads of a whole collection page by item numbers; no page may be cut by Milvus' cap."""
    store.create_collection("c", "text", {})
    n = 33_000  # two full windows of item numbers
    for start in range(0, n, 5500):
        store.upsert_items(
            "c", [ItemWrite(f"i{i}", b"x", {}, b"\x01") for i in range(start, start + 5500)], None
        )
    assert len(store.item_keys("c")) == n
    assert sum(len(chunk) for chunk in store.iter_items("c")) == n
    assert len(store.stale_nums("c", 1)) == n
