"""Admin retraining (real worker processes running the fake backend) and model versions."""

from __future__ import annotations

import time
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import ADMIN


def _wait(client: TestClient, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


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
    seen_versions = set()
    progress_seen = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        # items written during training must be in the new index too
        client.post(
            "/v1/collections/docs/items",
            json={"items": [{"id": f"during-{len(seen_versions)}", "text": "rocket"}]},
        )
        s = client.post("/v1/collections/docs/search", json={"id": "t003", "k": 5})
        assert s.status_code == 200
        seen_versions.add(s.json()["model_version"])
        state = client.get(f"/v1/admin/jobs/{job['id']}", headers=ADMIN).json()
        progress_seen |= state["progress"].get("epoch") is not None
        if state["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.05)
    done = _wait(client, job["id"])
    assert done["state"] == "succeeded", done
    assert done["metrics"] == {"loss": 0.1} and progress_seen
    assert seen_versions >= {1}
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
    failed = _wait(client, r.json()["id"])
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
    assert _wait(client, job_id)["state"] == "cancelled"
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
    assert _wait(client, r.json()["id"])["state"] == "succeeded"
    info = client.get("/v1/collections/img2").json()
    assert info["ready"] and info["bits"] == 8 and info["active_version"] == 1
    s = client.post("/v1/collections/img2/search", json={"id": "2", "k": 1}).json()
    assert s["hits"][0]["id"] == "2"
