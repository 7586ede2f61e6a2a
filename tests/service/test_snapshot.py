"""Start-up from saved indexes: taken when nothing was written since, rebuilt (and said so)
when stale or corrupt, saved only once this process holds every write."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service import snapshot
from service.config import InputLimits
from service.main import create_app
from service.registry import NewItem, Registry
from service.sqlite_store import SqliteStore
from tests.conftest import FakeBackend, make_settings, make_texts

pytestmark = pytest.mark.local_backend(
    "snapshots save the built-in HammingIndex; a Milvus index keeps its own durability"
)

Answers = list[list[tuple[int, str]]]


def _open(data_dir: Path) -> Registry:
    store = SqliteStore(data_dir / "bitseek.sqlite3")
    registry = Registry(store, FakeBackend(), data_dir, "cpu", InputLimits(), snapshots=True)
    registry.load()
    return registry


def _answers(registry: Registry) -> Answers:
    state, serving = registry.serving("docs")
    codes = serving.model.encode(make_texts(12, seed=3))
    return [
        [(h.distance, h.id) for h in state.search(serving, code[None], None, 8, None).hits()]
        for code in codes
    ]


def _snapshots(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "collections" / "docs" / "index").glob("*.idx"))


def _saved(data_dir: Path) -> Answers:
    registry = _open(data_dir)
    assert snapshot.save_all(registry) == 3  # docs, digits, vecs
    assert snapshot.save_all(registry) == 0  # saved at this seq already
    expect = _answers(registry)
    registry.store.close()
    return expect


def test_a_fresh_snapshot_is_loaded(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    expect = _saved(data_dir)
    assert len(_snapshots(data_dir)) == 1
    with caplog.at_level(logging.INFO, logger="service.snapshot"):
        registry = _open(data_dir)
    assert "collection docs: loaded the index saved at seq" in caplog.text
    assert _answers(registry) == expect
    registry.upsert("docs", [NewItem("new", "space orbit rocket", {}, "x")])  # still writable
    state, serving = registry.serving("docs")
    found = state.search(serving, serving.model.encode(["space orbit rocket"]), 0, None, None)
    assert "new" in {h.id for h in found.hits()}


def test_a_write_after_the_save_makes_it_stale(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _saved(data_dir)
    other = _open(data_dir)  # another process writes after the save
    other.upsert("vecs", [NewItem("late", [0.0] * 8, {}, "x")])  # any collection's write counts
    other.delete_item("docs", "t003")
    other.store.close()
    with caplog.at_level(logging.INFO, logger="service.snapshot"):
        registry = _open(data_dir)
    assert "collection docs: saved index is stale" in caplog.text
    assert all("t003" not in [i for _, i in hits] for hits in _answers(registry))
    assert snapshot.save_all(registry) == 3
    assert len(_snapshots(data_dir)) == 1  # the stale one is gone


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_corrupt_snapshot_is_rebuilt(
    data_dir: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    expect = _saved(data_dir)
    (path,) = _snapshots(data_dir)
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    else:
        raw = raw[: len(raw) // 3]
    path.write_bytes(bytes(raw))
    with caplog.at_level(logging.INFO, logger="service.snapshot"):
        registry = _open(data_dir)
    assert "collection docs: saved index is unreadable" in caplog.text
    assert _answers(registry) == expect


def test_nothing_is_saved_while_another_process_s_writes_are_not_applied(data_dir: Path) -> None:
    registry = _open(data_dir)
    other = _open(data_dir)
    other.upsert("docs", [NewItem("elsewhere", "hockey goal", {}, "x")])
    assert snapshot.save_all(registry) == 0  # its index lacks the other's write
    registry.sync()
    assert snapshot.save_all(registry) == 3
    for each in (registry, other):
        each.store.close()


def test_the_service_saves_at_shutdown_and_starts_from_it(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(data_dir, snapshot_settle_s=3600)
    with TestClient(create_app(settings, backend=FakeBackend())) as client:
        item = {"id": "fresh", "text": "moon planet orbit"}
        assert client.post("/v1/collections/docs/items", json={"items": [item]}).status_code == 200
    assert len(_snapshots(data_dir)) == 1
    with caplog.at_level(logging.INFO, logger="service.snapshot"):
        with TestClient(create_app(settings, backend=FakeBackend())) as client:
            r = client.post("/v1/collections/docs/search", json={"id": "fresh", "k": 1})
            assert r.json()["hits"][0]["id"] == "fresh"
    assert "collection docs: loaded the index saved at seq" in caplog.text
    assert len(_snapshots(data_dir)) == 1
