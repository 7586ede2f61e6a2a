"""service/storage.py on Milvus Lite: which index collections a newly opened store drops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_settings


def test_only_the_first_client_of_a_lite_file_drops_the_indexes_left_in_it(
    tmp_path: Path,
) -> None:
    pytest.importorskip("pymilvus")
    from service.milvus_index import PREFIX
    from service.storage import open_storage

    settings = make_settings(tmp_path, backend="milvus")
    first = open_storage(settings)
    index = first.index_factory(16)
    index.add(np.arange(3), np.zeros((3, 2), np.uint8))
    # a second store in the same process (a second Registry, `bitseek import` in tests): the
    # first one's index is live, not a leftover
    second = open_storage(settings)
    assert sorted(index.search_radius(np.zeros((1, 2), np.uint8), 0)[0].ids.tolist()) == [0, 1, 2]
    second.store.close()
    first.store.close()  # its index collection stays in the file, as after a killed server
    third = open_storage(settings)
    try:
        client = getattr(third.store, "client")  # noqa: B009 - only MilvusStore has one
        assert not [n for n in client.list_collections() if n.startswith(PREFIX)]
    finally:
        third.store.close()


def _job(job_id: str, host: str, owner: int) -> dict:
    return {"id": job_id, "collection": "docs", "state": "training", "settings": {},
            "progress": {}, "metrics": None, "error": None, "version": 2,
            "created_at": 0.0, "owner": owner, "host": host}  # fmt: skip


def test_a_job_of_another_host_holds_its_lease_while_its_record_is_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replicas on several hosts share Milvus: a process id means nothing on another host, so
    a job there is live while its server rewrites its record (every HEARTBEAT_S)."""
    pytest.importorskip("pymilvus")
    from service import store as store_module
    from service.milvus_store import MilvusStore

    store = MilvusStore(str(tmp_path / "milvus.db"), tmp_path, timeout=60.0)
    try:
        store.create_collection("docs", "text", {"bits": 16})
        store.put_job(_job("far", "another-host", owner=1))
        assert store.running_job("docs") == "far"
        assert store.claim_job(_job("near", store_module.HOST, owner=1)) == "far"
        assert store.fail_unfinished_jobs() == 0
        assert "host" not in (store.get_job("far") or {})
        monkeypatch.setattr(store_module, "LEASE_S", 0.0)  # its server stopped renewing it
        assert store.running_job("docs") is None
        assert store.fail_unfinished_jobs() == 1
        assert (store.get_job("far") or {})["state"] == "failed"
    finally:
        store.close()
