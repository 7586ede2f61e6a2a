"""Collections API: listing, admin-only create/delete, the admin guard itself."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from tests.conftest import ADMIN, FakeBackend, FakeModel, make_settings, make_texts


def test_list_and_read_collections(client: TestClient) -> None:
    r = client.get("/v1/collections")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 3
    assert [c["name"] for c in body["data"]] == ["digits", "docs", "vecs"]
    docs = client.get("/v1/collections/docs").json()
    assert docs["modality"] == "text" and docs["items"] == 40 and docs["bits"] == 32
    assert docs["active_version"] == 1 and docs["ready"] is True


def test_unknown_collection_is_404_naming_the_field(client: TestClient) -> None:
    for method, path, body in [
        ("GET", "/v1/collections/nope", None),
        ("POST", "/v1/collections/nope/items", {"items": [{"id": "a", "text": "x"}]}),
        ("POST", "/v1/collections/nope/search", {"text": "x"}),
        ("POST", "/v1/collections/nope/encode", {"items": [{"text": "x"}]}),
        ("POST", "/v1/collections/nope/denoise", {"items": [{"text": "x"}]}),
    ]:
        r = client.request(method, path, json=body)
        assert r.status_code == 404, path
        assert r.json()["error"]["field"] == "collection"


def test_create_needs_the_admin_token(client: TestClient) -> None:
    body = {"name": "new", "modality": "text"}
    r = client.post("/v1/collections", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    r = client.post("/v1/collections", json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert client.get("/v1/collections/new").status_code == 404
    r = client.post("/v1/collections", json=body, headers=ADMIN)
    assert r.status_code == 201
    assert r.json() | {"created_at": 0} == {
        "name": "new",
        "modality": "text",
        "items": 0,
        "bits": None,
        "active_version": None,
        "dim": None,
        "image_shape": None,
        "description": "",
        "created_at": 0,
        "ready": False,
    }


def test_admin_routes_are_absent_without_a_token(data_dir: Path) -> None:
    app = create_app(make_settings(data_dir, admin_token=None), backend=FakeBackend())
    with TestClient(app) as c:
        for method, path in [
            ("POST", "/v1/collections"),
            ("DELETE", "/v1/collections/docs"),
            ("POST", "/v1/admin/collections/docs/retrain"),
            ("GET", "/v1/admin/jobs/x"),
            ("GET", "/v1/admin/collections/docs/models"),
        ]:
            r = c.request(method, path, json={"name": "a", "modality": "text"}, headers=ADMIN)
            assert r.status_code == 404, path
            assert "BITSEEK_ADMIN_TOKEN" in r.json()["error"]["message"]
        assert c.get("/v1/collections/docs").status_code == 200


def test_create_validation(client: TestClient) -> None:
    cases = [
        ({"name": "v", "modality": "vector"}, "dim"),
        ({"name": "t", "modality": "text", "dim": 3}, "dim"),
        ({"name": "i", "modality": "image", "image_shape": [28, 28, 2]}, "image_shape"),
        ({"name": "bad name!", "modality": "text"}, "name"),
        ({"name": "b", "modality": "text", "bits": 12}, "bits"),
        ({"name": "b", "modality": "text", "bits": 136}, "bits"),  # the index holds <= 128
        ({"name": "b", "modality": "text", "bits": 256}, "bits"),
        ({"name": "c", "modality": "text", "model_from": "nope"}, "model_from"),
        ({"name": "m", "modality": "sound"}, "modality"),
        ({"name": "c", "modality": "text", "model_from": "digits"}, "model_from"),
    ]
    for body, field in cases:
        r = client.post("/v1/collections", json=body, headers=ADMIN)
        assert r.status_code == (404 if body.get("model_from") == "nope" else 422), body
        assert r.json()["error"]["field"] == field, body
    assert client.get("/v1/collections").json()["count"] == 3
    r = client.post("/v1/collections", json={"name": "docs", "modality": "text"}, headers=ADMIN)
    assert r.status_code == 409 and r.json()["error"]["field"] == "name"


def test_new_collection_stores_items_but_cannot_search_before_a_model(client: TestClient) -> None:
    client.post("/v1/collections", json={"name": "fresh", "modality": "text"}, headers=ADMIN)
    r = client.post("/v1/collections/fresh/items", json={"items": [{"id": "a", "text": "hello"}]})
    assert r.status_code == 200 and r.json().pop("seq") > 0
    assert {k: v for k, v in r.json().items() if k != "seq"} == {
        "upserted": 1,
        "model_version": None,
    }
    assert client.get("/v1/collections/fresh/items/a").json()["code"] is None
    r = client.post("/v1/collections/fresh/search", json={"text": "hello"})
    assert r.status_code == 409 and "retrain" in r.json()["error"]["message"]


def test_model_from_copies_the_model(client: TestClient) -> None:
    body = {"name": "copy", "modality": "text", "model_from": "docs"}
    r = client.post("/v1/collections", json=body, headers=ADMIN)
    assert r.status_code == 201 and r.json()["bits"] == 32 and r.json()["ready"]
    texts = make_texts(3)
    items = [{"id": str(i), "text": t} for i, t in enumerate(texts)]
    client.post("/v1/collections/copy/items", json={"items": items})
    hit = client.post("/v1/collections/copy/search", json={"id": "0", "k": 1}).json()["hits"][0]
    assert hit["id"] == "0" and hit["distance"] == 0
    # same model, same code as in the source collection
    a = client.post("/v1/collections/copy/encode", json={"items": [{"text": texts[0]}]}).json()
    b = client.post("/v1/collections/docs/encode", json={"items": [{"text": texts[0]}]}).json()
    assert a["codes"] == b["codes"]


def test_a_copy_retrains_at_the_copied_models_code_length(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.registry.install_model("docs", FakeModel("text", 16, ()))  # created at 32 bits
    body = {"name": "copy", "modality": "text", "model_from": "docs"}
    assert client.post("/v1/collections", json=body, headers=ADMIN).json()["bits"] == 16
    assert runtime.registry.get("copy").spec["bits"] == 16


def test_delete_collection(client: TestClient) -> None:
    assert client.delete("/v1/collections/docs").status_code == 401
    r = client.delete("/v1/collections/docs", headers=ADMIN)
    assert r.status_code == 200
    assert client.get("/v1/collections/docs").status_code == 404
    assert client.delete("/v1/collections/docs", headers=ADMIN).status_code == 404
    # the name can be reused and starts empty
    client.post("/v1/collections", json={"name": "docs", "modality": "text"}, headers=ADMIN)
    assert client.get("/v1/collections/docs").json()["items"] == 0


def test_concurrent_creates_of_one_name_give_one_201_and_409s(client: TestClient) -> None:
    outcomes: list[int] = []
    for n in range(10):
        barrier = threading.Barrier(3)

        def create(name: str = f"race{n}", barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            body = {"name": name, "modality": "text"}
            outcomes.append(client.post("/v1/collections", json=body, headers=ADMIN).status_code)

        threads = [threading.Thread(target=create) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(outcomes) == [201] * 10 + [409] * 20


def test_a_database_level_duplicate_is_a_409(client: TestClient) -> None:
    # another process sharing the database created the name; this one's memory does not know it
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.store.create_collection("ghost", "text", {})
    r = client.post("/v1/collections", json={"name": "ghost", "modality": "text"}, headers=ADMIN)
    assert r.status_code == 409 and r.json()["error"]["field"] == "name"


MODEL_FROM_SHAPES = [
    ({"name": "v3", "modality": "vector", "bits": 32, "model_from": "vecs"}, "bits"),
    ({"name": "v2", "modality": "vector", "dim": 3, "model_from": "vecs"}, "dim"),
    (
        {"name": "i2", "modality": "image", "image_shape": [8, 8], "model_from": "digits"},
        "image_shape",
    ),
]


@pytest.mark.parametrize(("body", "field"), MODEL_FROM_SHAPES)
def test_model_from_refuses_a_shape_its_model_does_not_take(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    r = client.post("/v1/collections", json=body, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == field, r.text
    assert client.get(f"/v1/collections/{body['name']}").status_code == 404
    del body[field]  # left out, it is the model's
    r = client.post("/v1/collections", json=body, headers=ADMIN)
    assert r.status_code == 201, r.text
    source = client.get(f"/v1/collections/{body['model_from']}").json()
    assert r.json()[field] == source[field]


@pytest.mark.parametrize("failure", ["copy", "commit"])
def test_a_model_from_create_that_fails_leaves_nothing_and_can_be_retried(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    app = create_app(make_settings(data_dir), backend=FakeBackend())
    with TestClient(app, raise_server_exceptions=False) as client:
        if failure == "copy":

            def no_space(*args: Any, **kwargs: Any) -> None:
                raise OSError(28, "No space left on device")

            monkeypatch.setattr(shutil, "copytree", no_space)
        else:

            def locked(*args: Any, **kwargs: Any) -> None:
                raise sqlite3.OperationalError("database is locked")

            monkeypatch.setattr(app.state.runtime.store, "set_codes", locked)
        body = {"name": "copy", "modality": "text", "model_from": "docs"}
        assert client.post("/v1/collections", json=body, headers=ADMIN).status_code == 500
        assert client.get("/v1/collections/copy").status_code == 404
        assert not (data_dir / "collections" / "copy").exists()
        monkeypatch.undo()
        r = client.post("/v1/collections", json=body, headers=ADMIN)
        assert r.status_code == 201 and r.json()["active_version"] == 1
    with TestClient(create_app(make_settings(data_dir), backend=FakeBackend())) as client:
        assert client.get("/readyz").status_code == 200
        assert client.get("/v1/collections/copy").json()["ready"]


def test_model_from_is_on_disk_before_its_version_is_committed(
    data_dir: Path, client: TestClient, monkeypatch: pytest.MonkeyPatch, fsynced: list[str]
) -> None:
    events = fsynced  # fsynced paths, then "commit" when the version is committed
    store = client.app.state.runtime.store  # type: ignore[attr-defined]
    set_codes = store.set_codes

    def committing(*args: Any, **kwargs: Any) -> None:
        events.append("commit")
        set_codes(*args, **kwargs)

    monkeypatch.setattr(store, "set_codes", committing)
    body = {"name": "copy", "modality": "text", "model_from": "docs"}
    assert client.post("/v1/collections", json=body, headers=ADMIN).status_code == 201
    model = data_dir / "collections" / "copy" / "models" / "v1"
    synced = set(events[: events.index("commit")])
    wanted = {*model.iterdir(), model, model.parent, model.parent.parent, data_dir / "collections"}
    assert {str(p) for p in wanted} <= synced


def test_a_delete_racing_a_create_of_the_same_name_spares_the_new_collections_files(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = client.app.state.runtime.registry  # type: ignore[attr-defined]
    registry.create("victim", "text", {"bits": 32}, model_from="docs")
    remove = shutil.rmtree
    raced: list[int] = []

    def rmtree_racing_a_create(path: Any, *args: Any, **kwargs: Any) -> None:
        if not raced:  # a create of the name arrives while the old directory is being removed
            raced.append(1)
            threading.Thread(
                target=registry.create, args=("victim", "text", {"bits": 32}, "docs")
            ).start()
            time.sleep(0.3)
        remove(path, *args, **kwargs)

    monkeypatch.setattr("service.registry.shutil.rmtree", rmtree_racing_a_create)
    registry.delete("victim")
    deadline = time.monotonic() + 10
    while registry.states.get("victim") is None or registry.states["victim"].serving is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert raced and (registry.model_dir("victim", 1) / "fake.json").exists()


def test_directories_left_by_an_interrupted_delete_are_cleared(data_dir: Path) -> None:
    leftover = data_dir / "collections" / "again" / "models" / "v1"
    leftover.mkdir(parents=True)  # the row was deleted, the process died before the files
    set_aside = data_dir / "collections" / ".deleted-old.1234abcd" / "models" / "v1"
    set_aside.mkdir(parents=True)
    app = create_app(make_settings(data_dir), backend=FakeBackend())
    with TestClient(app) as client:
        assert not set_aside.exists()
        body = {"name": "again", "modality": "text", "model_from": "docs"}
        r = client.post("/v1/collections", json=body, headers=ADMIN)
        assert r.status_code == 201, r.text
        assert sorted(
            p.name for p in (data_dir / "collections" / "again" / "models").iterdir()
        ) == ["v1"]
