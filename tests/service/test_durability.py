"""Crash safety: an acknowledged write survives SIGKILL of the server (real uvicorn process)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_texts
from tests.service import serve

pytestmark = pytest.mark.local_backend("survival of SIGKILL is measured on SQLite only")


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    proc, url = serve.start(data_dir, fake=True, seed=True)
    texts = make_texts(200, seed=3)
    written: list[str] = []
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for start in range(0, 200, 50):
                items = [
                    {"id": f"k{i}", "text": texts[i], "metadata": {"n": i}}
                    for i in range(start, start + 50)
                ]
                r = client.post("/v1/collections/docs/items", json={"items": items})
                assert r.status_code == 200
                written += [item["id"] for item in items]
            assert client.delete("/v1/collections/docs/items/t000").status_code == 200
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown hook, no checkpoint: a crash
        proc.wait()
    proc, url = serve.start(data_dir, fake=True)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            assert client.get("/v1/collections/docs").json()["items"] == 40 - 1 + 200
            for i, item_id in enumerate(written):
                item = client.get(f"/v1/collections/docs/items/{item_id}").json()
                assert item["text"] == texts[i] and item["metadata"] == {"n": i}
            assert client.get("/v1/collections/docs/items/t000").status_code == 404
            # and the rebuilt index finds them
            r = client.post("/v1/collections/docs/search", json={"id": "k123", "k": 1}).json()
            assert r["hits"][0]["distance"] == 0
            everything = client.post(
                "/v1/collections/docs/search", json={"code": "00000000", "max_distance": 32}
            ).json()
            assert {h["id"] for h in everything["hits"]} >= set(written)
    finally:
        serve.stop(proc)
