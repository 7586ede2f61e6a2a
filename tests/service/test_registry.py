"""Model-version swaps in the registry: what runs under the collection's write lock, writes
made during an activation, and an activation that dies before its commit."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.config import InputLimits
from service.registry import NewItem, Registry
from service.storage import open_storage
from tests.conftest import FakeBackend, FakeModel, held_items, make_settings


def _open(data_dir: Path) -> Registry:
    storage = open_storage(make_settings(data_dir))
    registry = Registry(
        storage.store, FakeBackend(), data_dir, "cpu", InputLimits(), storage.index_factory
    )
    registry.load()
    return registry


def _new_version(registry: Registry, seed: int) -> int:
    version = registry.next_version("docs")
    FakeModel("text", 16, (), seed=seed).save(registry.model_dir("docs", version))
    return version


def _check_consistent(registry: Registry, version: int) -> None:
    """Every stored code is the serving model's code of the stored text; the index holds
    exactly the stored items."""
    state, serving = registry.serving("docs")
    assert serving.version == version
    rows = [r for chunk in registry.store.iter_items("docs") for r in chunk]
    texts = [r.payload.decode() for r in rows]
    expect = serving.model.encode(texts)
    for row, code in zip(rows, expect, strict=True):
        assert row.version == version and row.code == bytes(code), row.id
    assert state.items.nums().tolist() == sorted(r.num for r in rows)
    assert held_items(state) == {r.id: r.metadata for r in rows}
    found = serving.index.search_radius(np.zeros((1, 2), np.uint8), 16)[0]
    assert sorted(found.ids.tolist()) == [r.num for r in rows]


def test_activation_stages_codes_outside_the_write_lock(data_dir: Path) -> None:
    registry = _open(data_dir)
    state = registry.get("docs")
    store = registry.store
    under_lock: list[int] = []
    lock_free: list[bool] = []
    write_codes, set_codes = store.write_codes, store.set_codes

    def spy_write(*args: Any, **kwargs: Any) -> None:
        got = [False]

        def probe() -> None:  # another thread: would block if the activation held the lock
            got[0] = state.write_lock.acquire(timeout=5)
            if got[0]:
                state.write_lock.release()

        t = threading.Thread(target=probe)
        t.start()
        t.join()
        lock_free.append(got[0])
        write_codes(*args, **kwargs)

    def spy_set(collection: str, version: int, codes: Any, **kwargs: Any) -> None:
        under_lock.append(len(codes))
        set_codes(collection, version, codes, **kwargs)

    store.write_codes = spy_write  # type: ignore[method-assign]
    store.set_codes = spy_set  # type: ignore[method-assign]
    version = _new_version(registry, seed=5)
    registry.activate("docs", version)
    assert lock_free == [True]
    assert under_lock == [0]  # nothing was written meanwhile: only the version flip
    _check_consistent(registry, version)
    store.close()


def test_writes_during_an_activation_land_in_the_new_version(data_dir: Path) -> None:
    registry = _open(data_dir)
    store = registry.store
    write_codes = store.write_codes

    def meanwhile(*args: Any, **kwargs: Any) -> None:
        write_codes(*args, **kwargs)
        # after the codes were staged, before the lock: overwrite, insert and delete items
        registry.upsert(
            "docs",
            [
                NewItem("t001", "hockey puck goal season", {"n": 1}, "x"),
                NewItem("new", "rocket launch moon", {}, "x"),
            ],
        )
        registry.delete_item("docs", "t002")

    store.write_codes = meanwhile  # type: ignore[method-assign]
    version = _new_version(registry, seed=6)
    registry.activate("docs", version)
    _check_consistent(registry, version)
    held = held_items(registry.get("docs"))
    assert "t002" not in held and "new" in held
    store.close()
    reopened = _open(data_dir)
    _check_consistent(reopened, version)
    reopened.store.close()


def test_an_activation_that_dies_before_its_commit_changes_nothing(data_dir: Path) -> None:
    registry = _open(data_dir)
    store = registry.store

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed")

    store.set_codes = crash  # type: ignore[method-assign]
    version = _new_version(registry, seed=7)
    with pytest.raises(RuntimeError, match="killed"):
        registry.activate("docs", version)
    assert registry.serving("docs")[1].version == 1
    store.close()
    # the staged codes of the unfinished version are not taken for version 1's
    reopened = _open(data_dir)
    state, serving = reopened.serving("docs")
    assert serving.version == 1 and serving.model.bits == 32
    rows = [r for chunk in reopened.store.iter_items("docs") for r in chunk]
    expect = serving.model.encode([r.payload.decode() for r in rows])
    assert all(r.version == 1 and r.code == bytes(c) for r, c in zip(rows, expect, strict=True))
    hit = serving.index.search_radius(expect[:1], 0)[0]
    assert rows[0].num in hit.ids.tolist()
    reopened.store.close()


def test_servers_sharing_a_store_follow_each_other(data_dir: Path) -> None:
    one, two = _open(data_dir), _open(data_dir)
    _, _, seq = one.upsert("docs", [NewItem("new", "space orbit rocket", {"k": 1}, "x")])
    assert "new" not in held_items(two.get("docs"))
    two.sync()
    state, serving = two.serving("docs")
    assert held_items(state)["new"] == {"k": 1}
    assert state.applied_seq >= seq
    code = serving.model.encode(["space orbit rocket"])
    found = state.search(serving, code, 0, None, None, 100)
    assert "new" in {hit.id for hit in found.hits()}
    one.delete_item("docs", "new")
    two.sync()
    assert "new" not in held_items(two.get("docs"))
    # a version activated through one: a write through two, still serving the old model, is
    # refused by the store, and two follows the new version and encodes the write again
    version = _new_version(one, seed=5)
    one.activate("docs", version)
    two.upsert("docs", [NewItem("late", "hockey goal team", {}, "x")])
    assert two.serving("docs")[1].version == version
    late = one.store.get_item("docs", "late")
    assert late is not None and late.version == version
    _check_consistent(two, version)
    one.sync()
    _check_consistent(one, version)
    # collections created and deleted through one come and go on two
    one.create("fresh", "text", {"bits": 16})
    two.sync()
    assert "fresh" in two.states
    one.delete("fresh")
    two.sync()
    assert "fresh" not in two.states


def test_without_outside_writes_sync_only_moves_the_applied_mark(data_dir: Path) -> None:
    registry = _open(data_dir)
    _, _, seq = registry.upsert("docs", [NewItem("mine", "nasa moon", {}, "x")])
    registry.store.changed_since = None  # type: ignore[method-assign]  # must not be read
    registry.sync()
    assert registry.get("docs").applied_seq >= seq
