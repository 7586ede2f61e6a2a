"""Liveness, readiness, metrics, settings."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service import cli
from service.config import Settings
from service.main import create_app, otel_requested
from service.routes.health import readyz
from tests.conftest import TEST_BACKEND, FakeBackend, make_settings


def test_livez_readyz_report_device(client: TestClient) -> None:
    assert client.get("/livez").json()["status"] == "ok"
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["device"] == "cpu"
    assert r.json()["collections"] == {
        "digits": "serving v1",
        "docs": "serving v1",
        "vecs": "serving v1",
    }


def test_readyz_is_503_when_a_model_cannot_load(data_dir: Path) -> None:
    shutil.rmtree(data_dir / "collections" / "vecs" / "models" / "v1")
    with TestClient(create_app(make_settings(data_dir), backend=FakeBackend())) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and "v1" in r.json()["collections"]["vecs"]
        # the other collections keep serving
        assert c.post("/v1/collections/docs/search", json={"id": "t001"}).status_code == 200
        assert c.post("/v1/collections/vecs/search", json={"id": "v1"}).status_code == 409


def test_metrics_exposes_requests_batches_items_versions_device(client: TestClient) -> None:
    client.post("/v1/collections/docs/search", json={"text": "rocket", "k": 3})
    client.post("/v1/collections/docs/search", json={"text": "rocket", "k": 0})
    text = client.get("/metrics").text
    route = 'route="/v1/collections/{collection}/search"'
    assert f'bitseek_requests_total{{method="POST",{route},status="200"}} 1.0' in text
    assert 'status="422"' in text
    assert "bitseek_request_seconds_bucket" in text
    assert "bitseek_encode_batch_size_count 1.0" in text
    assert 'bitseek_items{collection="docs"} 40.0' in text
    assert 'bitseek_model_version{collection="digits"} 1.0' in text
    assert 'bitseek_device_info{device="cpu"} 1.0' in text


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BITSEEK_PORT", "9123")
    monkeypatch.setenv("BITSEEK_DEVICE", "cuda:1")
    monkeypatch.setenv("BITSEEK_MAX_BODY_BYTES", "1234")
    s = Settings.model_validate({})
    assert (s.port, s.device, s.max_body_bytes) == (9123, "cuda:1", 1234)
    monkeypatch.setenv("BITSEEK_DEVICE", "gpu")
    with pytest.raises(ValidationError, match="device must be auto, cpu, cuda or cuda:N"):
        Settings.model_validate({})
    monkeypatch.setenv("BITSEEK_DEVICE", "cpu")
    monkeypatch.setenv("BITSEEK_LOG_LEVEL", "DEBUG")
    assert Settings.model_validate({}).log_level == "debug"
    monkeypatch.setenv("BITSEEK_LOG_LEVEL", "bogus")  # was a KeyError traceback from uvicorn
    with pytest.raises(ValidationError, match="log_level"):
        Settings.model_validate({})


def test_a_bad_log_level_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BITSEEK_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("BITSEEK_LOG_LEVEL", "bogus")
    assert cli.main(["serve", "--port", "1"]) == 2
    assert "log_level" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["--log-level", "bogus", "serve"])
    assert exited.value.code == 2 and "--log-level" in capsys.readouterr().err


def test_bodies_refused_for_their_size_are_counted(data_dir: Path) -> None:
    app = create_app(make_settings(data_dir, max_body_bytes=100), backend=FakeBackend())
    with TestClient(app) as client:
        big = {"items": [{"id": "a", "text": "x" * 200}]}
        assert client.post("/v1/collections/docs/items", json=big).status_code == 413
        assert 'status="413"' in client.get("/metrics").text


def test_unavailable_cuda_is_a_clear_start_up_error(data_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    app = create_app(make_settings(data_dir, device="cuda"), backend=FakeBackend())
    with pytest.raises(ValueError, match="CUDA is not available"), TestClient(app):
        pass


def test_readyz_survives_collections_created_and_deleted_meanwhile(client: TestClient) -> None:
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    registry = runtime.registry
    pads = 300 if TEST_BACKEND == "local" else 20  # a Milvus collection takes a second to make
    for i in range(pads):
        registry.create(f"pad{i}", "text", {"bits": 32})
    stop = threading.Event()

    def churn() -> None:
        i = 0
        while not stop.is_set():
            registry.create(f"churn{i}", "text", {"bits": 32})
            registry.delete(f"churn{i}")
            i += 1

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        for _ in range(2000):
            # raised "dictionary changed size during iteration" (a 500)
            answer = json.loads(bytes(readyz(runtime).body))
            assert answer["status"] == "ok"
            padded = {f"pad{i}" for i in range(pads)}
            assert padded <= set(answer["collections"])  # the steady ones are always listed
            assert all(
                state == "no model yet"
                for name, state in answer["collections"].items()
                if name.startswith(("pad", "churn"))
            )
    finally:
        stop.set()
        worker.join()


def test_opentelemetry_is_on_only_where_the_environment_sets_it_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE", raising=False)
    assert not otel_requested()
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "false")
    assert not otel_requested()
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "TRUE")
    assert otel_requested()
    monkeypatch.delenv("FASTAPI_OTEL_AUTO_CONFIGURE")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert otel_requested()
