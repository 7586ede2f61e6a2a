"""`bitseek serve` / `bitseek demo` registration and the demo build (with the fake model)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.commands import register, run_demo, run_serve
from tests.conftest import FakeBackend, FakeModel, make_images, make_settings, make_texts

pytestmark = pytest.mark.local_backend("opens the SQLite store of the demo build directly")


def test_register_adds_serve_and_demo() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "--port", "9000", "--device", "cpu"])
    assert args.handler is run_serve and args.port == 9000 and args.device == "cpu"
    args = parser.parse_args(["demo", "--if-missing", "--data-dir", "x"])
    assert args.handler is run_demo and args.if_missing and args.data_dir == "x"


def test_demo_builds_once_and_repairs_an_interrupted_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.data import Dataset, Split

    labels = np.eye(2, dtype=np.uint8)[np.arange(12) % 2]
    texts = Dataset(
        "text",
        Split(make_texts(12), [f"t{i}" for i in range(12)], labels),
        None,
        ["a", "b"],
        "fake",
    )
    images = Dataset(
        "image",
        Split(make_images(10, (8, 8)), [f"i{i}" for i in range(10)], None),
        None,
        [],
        "fake",
    )
    trained: list[str] = []

    def fake_train(dataset: Any, config: Any, progress: Any = None) -> FakeModel:
        trained.append(dataset.modality)
        shape = () if dataset.modality == "text" else (8, 8)
        return FakeModel(dataset.modality, config.bits, shape)

    monkeypatch.setattr("training.demo_data.demo_text", lambda: texts)
    monkeypatch.setattr("training.demo_data.demo_images", lambda: images)
    monkeypatch.setattr("training.train.train", fake_train)
    monkeypatch.setattr("service.backend.TrainingBackend", FakeBackend)
    from service.demo import build_demo

    settings = make_settings(tmp_path)
    report = build_demo(settings, if_missing=True)
    assert trained == ["text", "image"] and len(report) == 2
    assert build_demo(settings, if_missing=True) == [
        "demo-text: exists, left as is",
        "demo-images: exists, left as is",
    ]
    assert trained == ["text", "image"]
    # an interrupted build (never marked complete, items missing) is redone
    from service.demo import DONE_MARK
    from service.sqlite_store import SqliteStore
    from service.store import ItemWrite

    mark = tmp_path / "collections" / "demo-text" / DONE_MARK
    mark.unlink()
    store = SqliteStore(tmp_path / "bitseek.sqlite3")
    store.delete_item("demo-text", "t3")
    store.close()
    build_demo(settings, if_missing=True)
    assert trained == ["text", "image", "text"] and mark.exists()
    store = SqliteStore(tmp_path / "bitseek.sqlite3")
    item = store.get_item("demo-text", "t3")
    assert item is not None and item.metadata == {"label": "b"}
    # items a user wrote into a demo collection survive every later start, marked or not
    active = store.active_version("demo-text")
    store.upsert_items("demo-text", [ItemWrite("note-1", b"open a file", {}, None)], active)
    store.delete_item("demo-text", "t4")
    store.close()
    for unmarked in (False, True):
        if unmarked:
            mark.unlink()
        build_demo(settings, if_missing=True)
        assert trained == ["text", "image", "text"]
        store = SqliteStore(tmp_path / "bitseek.sqlite3")
        assert store.get_item("demo-text", "note-1") is not None
        store.close()
