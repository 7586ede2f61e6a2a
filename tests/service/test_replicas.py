"""Two server processes over one data directory (what `bitseek serve --workers N` runs): each
follows the other's writes, deletions, retraining jobs and model activations."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, wait_for_job
from tests.service import serve

pytestmark = [
    pytest.mark.slow,
    pytest.mark.local_backend("two server processes on one store; Milvus Lite allows one"),
]
BOUND_S = 5.0  # generous for a loaded CI machine; benchmarks/replicas.py measures the real delay


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    data = tmp_path / "data"
    data.mkdir()
    one, url_one = serve.start(data, fake=True, seed=True)
    two, url_two = serve.start(data, fake=True)
    try:
        with (
            httpx.Client(base_url=url_one, timeout=30) as a,
            httpx.Client(base_url=url_two, timeout=30) as b,
        ):
            yield a, b
    finally:
        serve.stop(one)
        serve.stop(two)


def _within(check: Callable[[], bool], what: str, seconds: float = BOUND_S) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if check():
            return time.monotonic() - start
        time.sleep(0.01)
    raise AssertionError(f"{what} not seen within {seconds} s")


def _ids(client: httpx.Client, body: dict[str, Any]) -> set[str]:
    r = client.post("/v1/collections/docs/search", json=body)
    assert r.status_code == 200, r.text
    return {hit["id"] for hit in r.json()["hits"]}


def test_a_write_through_one_server_is_found_through_the_other(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = pair
    text = "rocket launch orbit nasa"
    item = {"id": "x1", "text": text, "metadata": {"by": "a"}}
    r = a.post("/v1/collections/docs/items", json={"items": [item]})
    assert r.status_code == 200, r.text
    seq = r.json()["seq"]
    # asked to read its write: found at once on the other server
    assert "x1" in _ids(b, {"text": text, "max_distance": 0, "min_seq": seq})
    # and without asking, within the bound, for every write
    for i in range(10):
        item = {"id": f"y{i}", "text": f"{text} {i}", "metadata": {}}
        assert a.post("/v1/collections/docs/items", json={"items": [item]}).status_code == 200
        query = {"text": item["text"], "max_distance": 0}
        _within(lambda q=query, n=item["id"]: n in _ids(b, q), f"y{i} on the other server")
    # a deletion through the other server leaves this one too
    assert b.delete("/v1/collections/docs/items/x1").status_code == 200
    _within(lambda: "x1" not in _ids(a, {"text": text, "max_distance": 0}), "the deletion")
    # a collection created on one is listed and served on the other
    body = {"name": "fresh", "modality": "text", "bits": 16}
    assert a.post("/v1/collections", json=body, headers=ADMIN).status_code == 201
    _within(lambda: b.get("/v1/collections/fresh").status_code == 200, "the new collection")


def test_one_retraining_job_per_collection_and_activations_reach_both(
    pair: tuple[httpx.Client, httpx.Client],
) -> None:
    a, b = pair
    settings = {"settings": {"bits": 16, "epochs": 2, "sleep": 0.5, "seed": 7}}
    r = a.post("/v1/admin/collections/docs/retrain", json=settings, headers=ADMIN)
    assert r.status_code == 202, r.text
    job = r.json()
    clash = b.post("/v1/admin/collections/docs/retrain", json=settings, headers=ADMIN)
    assert clash.status_code == 409 and job["id"] in clash.json()["error"]["message"]
    assert wait_for_job(a, job["id"], timeout=120)["state"] == "succeeded"

    def version(client: httpx.Client) -> int:
        r = client.post("/v1/collections/docs/search", json={"id": "t001", "k": 3})
        return int(r.json()["model_version"])

    new = job["version"]
    _within(lambda: version(b) == new, "the retrained version on the other server")
    # roll back through the other server: both serve the old version again
    r = b.post(f"/v1/admin/collections/docs/models/{new - 1}/activate", headers=ADMIN)
    assert r.status_code == 200, r.text
    _within(lambda: version(a) == new - 1, "the rollback on the first server")


def test_killing_the_server_that_holds_a_retraining_lease_frees_the_job(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    holder, url_holder = serve.start(data, fake=True, seed=True)
    other, url_other = serve.start(data, fake=True)
    settings = {"settings": {"bits": 16, "epochs": 50, "sleep": 0.5, "seed": 7}}
    try:
        with httpx.Client(base_url=url_other, timeout=30) as b:
            with httpx.Client(base_url=url_holder, timeout=30) as a:
                r = a.post("/v1/admin/collections/docs/retrain", json=settings, headers=ADMIN)
                assert r.status_code == 202, r.text
                lost = r.json()["id"]
            clash = b.post("/v1/admin/collections/docs/retrain", json=settings, headers=ADMIN)
            assert clash.status_code == 409, clash.text
            holder.kill()  # SIGKILL: no goodbye, the lease is only the dead process id
            holder.wait()
            settings["settings"]["epochs"] = 2
            r = b.post("/v1/admin/collections/docs/retrain", json=settings, headers=ADMIN)
            assert r.status_code == 202, r.text
            taken = r.json()
            assert taken["id"] != lost
            r = b.get(f"/v1/admin/jobs/{lost}", headers=ADMIN)
            assert r.json()["state"] == "failed" and "stopped" in r.json()["error"]
            assert wait_for_job(b, taken["id"], timeout=120)["state"] == "succeeded"
            r = b.post("/v1/collections/docs/search", json={"id": "t001", "k": 3})
            assert r.status_code == 200 and r.json()["model_version"] == taken["version"]
    finally:
        serve.stop(holder)
        serve.stop(other)


def test_serve_workers_2_runs_two_processes_that_follow_each_other(tmp_path: Path) -> None:
    """The README's `bitseek serve --workers 2`, as a user runs it."""
    import os
    import subprocess
    import sys

    port = serve.free_port()
    env = {**os.environ, "BITSEEK_ADMIN_TOKEN": "test-token", "BITSEEK_LOG_LEVEL": "warning"}
    argv = [sys.executable, "-m", "service.cli", "serve", "--workers", "2", "--port", str(port),
            "--data-dir", str(tmp_path / "data"), "--device", "cpu"]  # fmt: skip
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _within(lambda: _ready(url), "both workers ready", seconds=90)
        assert len(_children(proc.pid)) >= 2  # uvicorn's worker processes
        body = {"name": "notes", "modality": "text", "bits": 16}
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.post("/v1/collections", json=body, headers=ADMIN).status_code == 201
            items = [{"id": f"n{i}", "text": f"note number {i}"} for i in range(30)]
            assert c.post("/v1/collections/notes/items", json={"items": items}).status_code == 200

        def every_worker_sees_them() -> bool:  # a fresh connection each: either worker answers
            answers = [httpx.get(f"{url}/v1/collections/notes", timeout=10) for _ in range(20)]
            return all(r.status_code == 200 and r.json()["items"] == 30 for r in answers)

        _within(every_worker_sees_them, "the writes on every worker")
    finally:
        serve.stop(proc)
        log.close()


def _ready(url: str) -> bool:
    try:
        return all(httpx.get(f"{url}/readyz", timeout=2).status_code == 200 for _ in range(6))
    except httpx.TransportError:
        return False


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:  # the parent's pid, after the state
            found.append(int(stat.parent.name))
    return found
