"""Admin retraining (real worker processes running the fake backend) and model versions."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from tests.conftest import (
    ADMIN,
    FakeBackend,
    FakeModel,
    make_settings,
    open_test_store,
    wait_for_job,
)


def test_retrain_swaps_in_a_new_version_while_searches_continue(client: TestClient) -> None:
    before = client.post("/v1/collections/docs/search", json={"id": "t003", "k": 5}).json()
    r = client.post(
        "/v1/admin/collections/docs/retrain",
        json={"settings": {"bits": 16, "epochs": 3, "sleep": 0.3, "seed": 7}},
        headers=ADMIN,
    )
    assert r.status_code == 202
    job = r.json()
    assert job["state"] in ("queued", "training") and job["version"] == 2
    # one job per collection
    again = client.post("/v1/admin/collections/docs/retrain", json={}, headers=ADMIN)
    assert again.status_code == 409 and again.json()["error"]["field"] == "collection"
    searched: list[tuple[int, int]] = []  # (status, model version) of every search made
    progress_seen = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # items written during training must be in the new index too
        client.post(
            "/v1/collections/docs/items",
            json={"items": [{"id": f"during-{len(searched)}", "text": "rocket"}]},
        )
        s = client.post("/v1/collections/docs/search", json={"id": "t003", "k": 5})
        searched.append((s.status_code, s.json().get("model_version")))
        state = client.get(f"/v1/admin/jobs/{job['id']}", headers=ADMIN).json()
        progress_seen |= state["progress"].get("epoch") is not None
        if state["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    done = wait_for_job(client, job["id"])
    assert done["state"] == "succeeded", done
    assert done["metrics"] == {"loss": 0.1} and progress_seen
    # every search during training and the swap was answered, by the old then the new version
    assert len(searched) >= 3 and all(status == 200 for status, _ in searched), searched
    versions_seen = [v for _, v in searched]
    assert versions_seen[0] == 1 and versions_seen == sorted(versions_seen)
    assert set(versions_seen) <= {1, 2}
    after = client.post("/v1/collections/docs/search", json={"id": "t003", "k": 5}).json()
    assert after["model_version"] == 2 and after["bits"] == 16 and len(after["code"]) == 4
    assert after["hits"][0] == {**after["hits"][0], "distance": 0}
    assert before["model_version"] == 1
    # every item, including those written during training, is searchable under v2
    n = client.get("/v1/collections/docs").json()["items"]
    everything = client.post(
        "/v1/collections/docs/search", json={"code": "0000", "max_distance": 16}
    ).json()
    assert len(everything["hits"]) == n
    item = client.get("/v1/collections/docs/items/during-0").json()
    assert item["model_version"] == 2 and len(item["code"]) == 4
    versions = client.get("/v1/admin/collections/docs/models", headers=ADMIN).json()
    assert [(v["version"], v["active"]) for v in versions["data"]] == [(1, False), (2, True)]
    # roll back
    r = client.post("/v1/admin/collections/docs/models/1/activate", headers=ADMIN)
    assert r.status_code == 200 and r.json()["active_version"] == 1 and r.json()["bits"] == 32
    s = client.post("/v1/collections/docs/search", json={"id": "during-0", "k": 1}).json()
    assert s["model_version"] == 1 and s["hits"][0]["id"] == "during-0"
    r = client.post("/v1/admin/collections/docs/models/9/activate", headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["field"] == "version"


def test_failed_and_cancelled_jobs_leave_the_old_version(client: TestClient) -> None:
    r = client.post(
        "/v1/admin/collections/vecs/retrain", json={"settings": {"fail": True}}, headers=ADMIN
    )
    failed = wait_for_job(client, r.json()["id"])
    assert failed["state"] == "failed" and "diverged" in failed["error"]
    r = client.post(
        "/v1/admin/collections/vecs/retrain",
        json={"settings": {"epochs": 50, "sleep": 0.2}},
        headers=ADMIN,
    )
    job_id = r.json()["id"]
    time.sleep(0.5)
    c = client.post(f"/v1/admin/jobs/{job_id}/cancel", headers=ADMIN)
    assert c.status_code == 200
    assert wait_for_job(client, job_id)["state"] == "cancelled"
    assert client.post(f"/v1/admin/jobs/{job_id}/cancel", headers=ADMIN).status_code == 409
    info = client.get("/v1/collections/vecs").json()
    assert info["active_version"] == 1 and info["bits"] == 16
    versions = client.get("/v1/admin/collections/vecs/models", headers=ADMIN).json()
    assert [v["version"] for v in versions["data"]] == [1]
    s = client.post("/v1/collections/vecs/search", json={"id": "v1", "k": 1}).json()
    assert s["model_version"] == 1 and s["hits"][0]["id"] == "v1"


def test_retrain_input_errors(client: TestClient) -> None:
    r = client.post(
        "/v1/admin/collections/docs/retrain", json={"settings": {"nope": 1}}, headers=ADMIN
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "settings.nope"
    r = client.post("/v1/admin/collections/zzz/retrain", json={}, headers=ADMIN)
    assert r.status_code == 404
    assert client.get("/v1/admin/jobs/unknown", headers=ADMIN).status_code == 404
    client.post("/v1/collections", json={"name": "empty", "modality": "text"}, headers=ADMIN)
    r = client.post("/v1/admin/collections/empty/retrain", json={}, headers=ADMIN)
    assert r.status_code == 409 and "no items" in r.json()["error"]["message"]


def test_first_model_of_a_new_collection_comes_from_retraining(client: TestClient) -> None:
    body = {"name": "img2", "modality": "image", "image_shape": [8, 8], "bits": 8}
    assert client.post("/v1/collections", json=body, headers=ADMIN).status_code == 201
    from tests.conftest import make_images, png_b64

    items = [{"id": str(i), "image": png_b64(x)} for i, x in enumerate(make_images(6, (8, 8)))]
    client.post("/v1/collections/img2/items", json={"items": items})
    r = client.post("/v1/admin/collections/img2/retrain", json={}, headers=ADMIN)
    assert wait_for_job(client, r.json()["id"])["state"] == "succeeded"
    info = client.get("/v1/collections/img2").json()
    assert info["ready"] and info["bits"] == 8 and info["active_version"] == 1
    s = client.post("/v1/collections/img2/search", json={"id": "2", "k": 1}).json()
    assert s["hits"][0]["id"] == "2"


def _job_dirs(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "collections" / "docs" / "models").iterdir())


def test_a_failure_after_the_swap_keeps_the_serving_version(data_dir: Path) -> None:
    app = create_app(make_settings(data_dir), backend=FakeBackend())
    with TestClient(app) as client:
        store = app.state.runtime.store
        put_job = store.put_job

        def flaky_put_job(job: dict[str, Any]) -> None:
            if job["state"] == "succeeded":
                raise sqlite3.OperationalError("disk I/O error")
            put_job(job)

        store.put_job = flaky_put_job
        jobs = app.state.runtime.jobs
        client.post("/v1/admin/collections/docs/retrain", json={}, headers=ADMIN)
        deadline = time.monotonic() + 60
        while jobs.finished == 0:  # its final state cannot be stored: watch the manager
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert client.get("/v1/collections/docs").json()["active_version"] == 2
        versions = client.get("/v1/admin/collections/docs/models", headers=ADMIN).json()
        assert [(v["version"], v["active"]) for v in versions["data"]] == [(1, False), (2, True)]
        assert _job_dirs(data_dir) == ["v1", "v2"]
    # the version now serving survives a restart
    app = create_app(make_settings(data_dir), backend=FakeBackend())
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        s = client.post("/v1/collections/docs/search", json={"id": "t003", "k": 1})
        assert s.status_code == 200 and s.json()["model_version"] == 2


def test_a_failure_before_the_swap_leaves_no_trace(data_dir: Path) -> None:
    app = create_app(make_settings(data_dir), backend=FakeBackend())
    with TestClient(app) as client:
        store = app.state.runtime.store

        def broken_set_codes(*args: Any, **kwargs: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        store.set_codes = broken_set_codes
        r = client.post("/v1/admin/collections/docs/retrain", json={}, headers=ADMIN)
        done = wait_for_job(client, r.json()["id"])
        assert done["state"] == "failed" and "disk is full" in done["error"]
        assert client.get("/v1/collections/docs").json()["active_version"] == 1
        versions = client.get("/v1/admin/collections/docs/models", headers=ADMIN).json()
        assert [v["version"] for v in versions["data"]] == [1]
        assert _job_dirs(data_dir) == ["v1"]
    app = create_app(make_settings(data_dir), backend=FakeBackend())
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200


def test_shutdown_records_the_cancelled_job_before_closing_the_store(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    errors: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: errors.append(str(a.exc_value)))
    app = create_app(make_settings(data_dir), backend=FakeBackend())
    with TestClient(app) as client:
        body = {"settings": {"epochs": 50, "sleep": 0.2}}
        r = client.post("/v1/admin/collections/docs/retrain", json=body, headers=ADMIN)
        job_id = r.json()["id"]
        deadline = time.monotonic() + 30
        while client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN).json()["progress"] == {}:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert errors == []
    store = open_test_store(data_dir)
    try:
        job = store.get_job(job_id)
    finally:
        store.close()
    assert job is not None and (job["state"], job["error"]) == ("cancelled", "server shutting down")
    assert _job_dirs(data_dir) == ["v1"]


def test_retrain_refuses_a_code_length_the_index_cannot_hold(client: TestClient) -> None:
    state = client.app.state.runtime.registry.get("docs")  # type: ignore[attr-defined]
    state.spec["bits"] = 256  # a collection made before the schema limit existed
    r = client.post("/v1/admin/collections/docs/retrain", json={}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["field"] == "settings.bits"
    assert client.get("/v1/admin/collections/docs/models", headers=ADMIN).json()["count"] == 1


def test_cancel_and_apply_cannot_both_win(client: TestClient) -> None:
    """cancel() and the monitor's move to 'applying' are one check-and-set each, under one
    lock: whichever comes first wins, the other is refused."""
    jobs = client.app.state.runtime.jobs  # type: ignore[attr-defined]
    body = {"settings": {"epochs": 50, "sleep": 0.2}}
    job_id = client.post("/v1/admin/collections/vecs/retrain", json=body, headers=ADMIN).json()[
        "id"
    ]
    assert jobs.cancel(job_id)["state"] == "cancelling"
    assert not jobs._transition(job_id, ("training",), "applying")  # the monitor loses
    assert wait_for_job(client, job_id)["state"] == "cancelled"
    job_id = client.post("/v1/admin/collections/vecs/retrain", json=body, headers=ADMIN).json()[
        "id"
    ]
    assert jobs._transition(job_id, ("training",), "applying")  # the monitor wins
    r = client.post(f"/v1/admin/jobs/{job_id}/cancel", headers=ADMIN)
    assert r.status_code == 409 and "applying" in r.json()["error"]["message"]
    jobs._transition(job_id, ("applying",), "cancelling")  # let the test end quickly
    jobs._procs[job_id].terminate()
    assert wait_for_job(client, job_id)["state"] in ("cancelled", "failed")


def test_deleting_a_retraining_collection_spares_a_new_one_of_the_same_name(
    data_dir: Path, client: TestClient
) -> None:
    jobs = client.app.state.runtime.jobs  # type: ignore[attr-defined]
    body = {"name": "x", "modality": "vector", "dim": 8}
    assert client.post("/v1/collections", json=body, headers=ADMIN).status_code == 201
    items = [{"id": str(i), "vector": [float(i)] * 8} for i in range(5)]
    client.post("/v1/collections/x/items", json={"items": items})
    retrain = {"settings": {"epochs": 50, "sleep": 0.2}}
    assert client.post("/v1/admin/collections/x/retrain", json=retrain, headers=ADMIN).is_success
    assert client.delete("/v1/collections/x", headers=ADMIN).status_code == 200
    again = {"name": "x", "modality": "vector", "model_from": "vecs"}
    r = client.post("/v1/collections", json=again, headers=ADMIN)
    assert r.status_code == 201 and r.json()["active_version"] == 1
    deadline = time.monotonic() + 30
    while jobs.finished == 0:  # the cancelled job's monitor has run to its end
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert (data_dir / "collections" / "x" / "models" / "v1").is_dir()
    assert client.get("/v1/admin/collections/x/models", headers=ADMIN).json()["count"] == 1


def test_deleting_a_collection_whose_job_is_applying_waits_for_the_swap(
    data_dir: Path, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    write_codes = runtime.store.write_codes
    staging, release = threading.Event(), threading.Event()

    def held_write_codes(*args: Any, **kwargs: Any) -> None:
        staging.set()
        assert release.wait(timeout=30)
        write_codes(*args, **kwargs)

    monkeypatch.setattr(runtime.store, "write_codes", held_write_codes)
    job_id = client.post("/v1/admin/collections/vecs/retrain", json={}, headers=ADMIN).json()["id"]
    assert staging.wait(timeout=60)
    assert client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN).json()["state"] == "applying"
    deleted: list[int] = []
    deleter = threading.Thread(
        target=lambda: deleted.append(
            client.delete("/v1/collections/vecs", headers=ADMIN).status_code
        )
    )
    deleter.start()
    time.sleep(0.3)
    assert deleted == []  # waiting for the swap, not refusing
    release.set()
    deleter.join(timeout=60)
    assert deleted == [200]
    assert client.get("/v1/collections/vecs").status_code == 404
    assert not (data_dir / "collections" / "vecs").exists()
    assert client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN).status_code == 404


class _Unstartable:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def start(self) -> None:
        raise OSError("Resource temporarily unavailable")

    def is_alive(self) -> bool:
        return False


@pytest.mark.parametrize("failure", ["store", "process"])
def test_a_job_that_cannot_start_leaves_the_collection_free_to_retrain(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    if failure == "store":
        put_job = runtime.store.put_job

        def locked_put_job(job: dict[str, Any]) -> None:
            if job["state"] == "queued":
                raise sqlite3.OperationalError("database is locked")
            put_job(job)

        monkeypatch.setattr(runtime.store, "put_job", locked_put_job)
    else:
        ctx = SimpleNamespace(Queue=runtime.jobs._ctx.Queue, Process=_Unstartable)
        monkeypatch.setattr(runtime.jobs, "_ctx", ctx)
    r = client.post("/v1/admin/collections/vecs/retrain", json={}, headers=ADMIN)
    assert r.status_code == 503 and "try again" in r.json()["error"]["message"]
    assert not runtime.jobs.running_for("vecs")
    monkeypatch.undo()
    r = client.post("/v1/admin/collections/vecs/retrain", json={}, headers=ADMIN)
    assert r.status_code == 202, r.text
    assert wait_for_job(client, r.json()["id"])["state"] == "succeeded"


def test_activations_of_one_collection_run_one_at_a_time(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.registry.install_model("docs", FakeModel("text", 16, (), seed=3))
    store = runtime.store
    write_codes = store.write_codes
    staging: list[int] = []
    most = 0
    lock = threading.Lock()

    def slow_write_codes(*args: Any, **kwargs: Any) -> None:
        nonlocal most
        with lock:
            staging.append(1)
            most = max(most, len(staging))
        time.sleep(0.3)  # long enough for another activation to get here too, if it may
        write_codes(*args, **kwargs)
        with lock:
            staging.pop()

    monkeypatch.setattr(store, "write_codes", slow_write_codes)
    barrier = threading.Barrier(2)
    statuses: list[int] = []

    def activate(version: int) -> None:
        barrier.wait()
        url = f"/v1/admin/collections/docs/models/{version}/activate"
        statuses.append(client.post(url, headers=ADMIN).status_code)

    threads = [threading.Thread(target=activate, args=(v,)) for v in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200, 200] and most == 1
    active = client.get("/v1/collections/docs").json()["active_version"]
    assert store.stale_nums("docs", active) == set()  # every stored code is the active model's


def test_a_job_seen_finished_frees_its_collection_on_a_slow_store(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A final state shows only once it is stored, with the collection free in the same step:
    a retrain right after one is seen failed is accepted, even when writes are slow (Milvus)."""
    store = client.app.state.runtime.store  # type: ignore[attr-defined]
    put_job = store.put_job

    def slow_put_job(job: dict[str, Any]) -> None:
        time.sleep(0.3)
        put_job(job)

    monkeypatch.setattr(store, "put_job", slow_put_job)
    body = {"settings": {"fail": True}}
    for _ in range(2):
        r = client.post("/v1/admin/collections/vecs/retrain", json=body, headers=ADMIN)
        assert r.status_code == 202, r.text
        assert wait_for_job(client, r.json()["id"])["state"] == "failed"


def test_a_running_job_renews_its_record(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease other hosts read (service/store.py, holder_alive): a job that sends no
    progress for a while still has its record rewritten every HEARTBEAT_S."""
    import service.jobs

    monkeypatch.setattr(service.jobs, "HEARTBEAT_S", 0.3)
    store = client.app.state.runtime.store  # type: ignore[attr-defined]
    body = {"settings": {"epochs": 1, "sleep": 4.0}}
    r = client.post("/v1/admin/collections/vecs/retrain", json=body, headers=ADMIN)
    job_id = r.json()["id"]
    seen = set()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        job = store.get_job(job_id)
        if job is not None and job["state"] == "training":
            seen.add(job["updated_at"])
        time.sleep(0.1)
    assert len(seen) >= 3  # rewritten several times within one silent epoch
    assert wait_for_job(client, job_id)["state"] == "succeeded"
