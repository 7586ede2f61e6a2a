"""Schemathesis over /openapi.json against the real server: no request may cause a 500.

A bounded number of examples per operation keeps it well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from service.main import create_app
from tests.conftest import ADMIN, FakeBackend, make_settings
from tests.service import serve

schema = schemathesis.openapi.from_dict(
    create_app(make_settings(Path("unused")), backend=FakeBackend()).openapi()
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    data_dir.mkdir()
    # small limits so the fuzzer can reach them
    env = {"BITSEEK_MAX_BATCH_ITEMS": "20", "BITSEEK_MAX_BODY_BYTES": "200000"}
    proc, url = serve.start(data_dir, fake=True, seed=True, env=env)
    yield url
    serve.stop(proc)


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_request_makes_a_server_error(case: Any, server: str) -> None:
    params = case.path_parameters or {}
    if case.path.endswith("/retrain"):
        # each accepted retrain spawns a worker process; the fuzzer may only fail to start one
        params["collection"] = "no-such-collection"
    elif "collection" in params and case.method != "DELETE":
        # aim most cases at real collections so bodies reach validation and the models
        names = ["docs", "digits", "vecs", params["collection"]]
        params["collection"] = names[len(str(case.body)) % 4]
    response = case.call(base_url=server, headers=ADMIN, timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.text[:500])
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith(("application/json", "text/plain")), content_type
