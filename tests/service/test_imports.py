"""Bulk import: NDJSON streamed over HTTP and `bitseek import`, in durable, resumable batches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.archive import item_lines
from service.config import InputLimits
from service.importer import write_batch
from service.main import create_app
from service.registry import NewItem, Registry
from service.storage import open_storage
from tests.conftest import TEST_BACKEND, FakeBackend, held_items, make_settings, make_texts
from tests.service import serve


def _lines(n: int, start: int = 0) -> list[dict[str, object]]:
    texts = make_texts(n + start)
    return [
        {"id": f"imp{i}", "text": texts[i], "metadata": {"n": i}} for i in range(start, start + n)
    ]


def _ndjson(items: list[dict[str, object]]) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def test_ndjson_import_writes_in_batches_and_resumes(client: TestClient) -> None:
    items = _lines(1200)
    r = client.post("/v1/collections/docs/items/import?batch=500", content=_ndjson(items))
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == 1200 and r.json()["batches"] == 3
    assert r.json()["skipped"] == 0 and r.json()["model_version"] == 1
    assert client.get("/v1/collections/docs").json()["items"] == 40 + 1200
    assert client.get("/v1/collections/docs/items/imp7").json()["metadata"] == {"n": 7}
    hit = client.post("/v1/collections/docs/search", json={"id": "imp7", "max_distance": 0})
    assert "imp7" in {h["id"] for h in hit.json()["hits"]}
    # the same file again, resuming: nothing written twice
    again = client.post(
        "/v1/collections/docs/items/import?skip_existing=true", content=_ndjson(items)
    )
    assert again.json()["imported"] == 0 and again.json()["skipped"] == 1200
    assert client.get("/v1/collections/docs").json()["items"] == 40 + 1200


def test_an_import_may_bring_codes_and_a_code_of_another_version_stops_it(
    client: TestClient,
) -> None:
    items = _lines(9)
    for k, item in enumerate(items):
        item.update(code=f"{k:08x}", model_version=1)
    items[7]["model_version"] = 2  # computed by a version the collection does not serve
    r = client.post("/v1/collections/docs/items/import?batch=5", content=_ndjson(items))
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["field"] == "line 8.code" and "5 item(s) before it are stored" in error["message"]
    assert client.get("/v1/collections/docs").json()["items"] == 40 + 5
    assert client.get("/v1/collections/docs/items/imp3").json()["code"] == f"{3:08x}"
    hit = client.post("/v1/collections/docs/search", json={"code": f"{3:08x}", "max_distance": 0})
    assert "imp3" in {h["id"] for h in hit.json()["hits"]}


def test_a_bad_line_names_itself_and_what_is_stored(client: TestClient) -> None:
    items = _lines(12)
    body = _ndjson(items[:7]) + b'{"id": "bad", "vector": [1.0]}\n' + _ndjson(items[7:])
    r = client.post("/v1/collections/docs/items/import?batch=5", content=body)
    assert r.status_code == 422
    error = r.json()["error"]
    assert (
        error["field"].startswith("line 8") and "5 item(s) before it are stored" in error["message"]
    )
    assert client.get("/v1/collections/docs/items/imp4").status_code == 200  # its batch stayed
    assert client.get("/v1/collections/docs/items/imp5").status_code == 404  # not its batch
    broken = client.post("/v1/collections/docs/items/import", content=b'{"id": \n')
    assert broken.status_code == 422 and broken.json()["error"]["field"] == "line 1"
    # a JSON escape of a lone surrogate (no UTF-8 encoder takes it) is refused by the parser
    lone = _ndjson(items[:2]) + b'{"id": "s", "text": "a \\ud800 b"}\n'
    r = client.post("/v1/collections/docs/items/import", content=lone)
    assert r.status_code == 422 and r.json()["error"]["field"] == "line 3"
    assert "0 item(s) before it are stored" in r.json()["error"]["message"]
    assert client.get("/v1/collections/docs/items/s").status_code == 404


def test_an_import_is_limited_per_line_not_per_body(data_dir: Path) -> None:
    app = create_app(make_settings(data_dir, max_body_bytes=2000), backend=FakeBackend())
    with TestClient(app) as c:
        items = _lines(300)
        assert len(_ndjson(items)) > 10 * 2000
        r = c.post("/v1/collections/docs/items/import", content=_ndjson(items))
        assert r.status_code == 200 and r.json()["imported"] == 300
        long = {"id": "long", "text": "word " * 1000}
        r = c.post("/v1/collections/docs/items/import", content=_ndjson([long]))
        assert r.status_code == 422 and "longer than 2000 bytes" in r.json()["error"]["message"]


@pytest.mark.slow
@pytest.mark.local_backend("survival of SIGKILL is measured on SQLite only")
def test_import_survives_a_killed_server_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    archive = tmp_path / "archive.jsonl"
    items = _lines(3000)
    archive.write_bytes(_ndjson(items))
    proc, url = serve.start(data, fake=True, seed=True)
    command = [sys.executable, "-m", "service.cli", "import", str(archive)]
    command += ["--collection", "docs", "--url", url, "--batch", "100"]
    importer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with httpx.Client(base_url=url) as c:
        deadline = time.monotonic() + 60
        while c.get("/v1/collections/docs").json()["items"] < 40 + 500:
            assert time.monotonic() < deadline, "the import did not get going"
            time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-file, no goodbye
    proc.wait()
    assert importer.wait(timeout=60) != 0
    proc, url = serve.start(data, fake=True)
    try:
        with httpx.Client(base_url=url) as c:
            stored = c.get("/v1/collections/docs").json()["items"] - 40
            assert 500 <= stored < 3000  # acknowledged batches survived the kill
            command[command.index("--url") + 1] = url
            done = subprocess.run([*command, "--resume"], capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            assert f"skipped {stored} already stored" in done.stdout
            assert c.get("/v1/collections/docs").json()["items"] == 40 + 3000  # none twice
            ids = {f"imp{i}" for i in range(3000)}
            found = c.post(
                "/v1/collections/docs/search", json={"code": "0" * 8, "max_distance": 32}
            ).json()
            assert found["truncated"] or ids <= {h["id"] for h in found["hits"]}
            for i in (0, 1499, 2999):
                assert c.get(f"/v1/collections/docs/items/imp{i}").json()["metadata"] == {"n": i}
    finally:
        serve.stop(proc)


def test_bitseek_import_reads_datasets_into_a_data_directory(data_dir: Path) -> None:
    records = [{"id": f"ds{i}", "text": t, "labels": ["a" if i % 2 else "b"]}
               for i, t in enumerate(make_texts(30))]  # fmt: skip
    path = data_dir.parent / "set.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    env = {**os.environ, "BITSEEK_DATA_DIR": str(data_dir), "BITSEEK_DEVICE": "cpu",
           "BITSEEK_BACKEND": TEST_BACKEND}  # fmt: skip
    command = [sys.executable, "-m", "service.cli", "import", str(path), "--collection", "docs"]
    done = subprocess.run([*command, "--batch", "7"], capture_output=True, text=True, env=env)
    # the collection's (fake) model is not one `bitseek import` can load: the items are stored
    # without codes, and encoded once a server that can load the model starts
    assert done.returncode == 0, done.stderr
    assert "imported 30 item(s)" in done.stdout and "in 5 batch(es)" in done.stdout
    storage = open_storage(make_settings(data_dir))
    registry = Registry(
        storage.store, FakeBackend(), data_dir, "cpu", InputLimits(), storage.index_factory
    )
    registry.load()
    state, serving = registry.serving("docs")
    assert state.size == 40 + 30 and held_items(state)["ds3"] == {"label": "a"}
    code = serving.model.encode([records[3]["text"]])
    found = state.search(serving, code, 0, None, None, 1000)
    assert "ds3" in {hit.id for hit in found.hits()}
    vectors = np.random.RandomState(0).standard_normal((25, 8)).astype(np.float32)
    np.save(data_dir.parent / "vecs.npy", vectors)
    lines, total = item_lines(data_dir.parent / "vecs.npy")
    assert total == 25
    items = [json.loads(line) for line in lines]
    batch = [NewItem(r["id"], r["vector"], r.get("metadata", {}), "x") for r in items]
    result = write_batch(registry, "vecs", batch, skip_existing=False)
    assert result.written == 25 and registry.get("vecs").size == 30 + 25
    again = write_batch(registry, "vecs", batch, skip_existing=True)
    assert again.written == 0 and again.skipped == 25 and again.seq is None
    labelled, _ = item_lines(path)
    first = json.loads(next(labelled))
    assert first["metadata"] == {"label": "b"} and "labels" not in first
