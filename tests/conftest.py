"""Shared test doubles and factories.

``FakeModel`` implements the ``TrainedModel`` contract of docs/ARCHITECTURE.md exactly, with a
deterministic random-projection sign hash over real features (hashed bag of words for text,
pixels / 255 for images, the vector itself), so API tests run in milliseconds without training.
``FakeBackend`` loads and "trains" it; it is importable (``tests.conftest``) so the spawned
retraining worker can use it too.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from models.code_width import CODE_WIDTHS

TEXT_DIM = 256
# The storage backend the service tests run on: BITSEEK_TEST_BACKEND=milvus runs them on Milvus
# Lite (tests/service/test_store_contract.py runs the store contract on both, always).
TEST_BACKEND = os.environ.get("BITSEEK_TEST_BACKEND", "local")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On BITSEEK_TEST_BACKEND=milvus, skip the tests marked ``local_backend`` (with reasons)."""
    if TEST_BACKEND == "local":
        return
    for item in items:
        marker = item.get_closest_marker("local_backend")
        if marker is not None:
            reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
            item.add_marker(pytest.mark.skip(reason=f"local backend only: {reason}"))


def open_test_store(data_dir: Path) -> Any:
    """The ItemStore the service tests run on (BITSEEK_TEST_BACKEND), over ``data_dir``."""
    from service.storage import open_storage

    return open_storage(make_settings(data_dir)).store


def pytest_configure(config: pytest.Config) -> None:
    # Starlette asks for its httpx fork in TestClient; the plain httpx it still supports is fine
    config.addinivalue_line(
        "filterwarnings", "ignore::starlette.exceptions.StarletteDeprecationWarning"
    )


_TOKEN = re.compile(r"[a-z0-9]+")


def _bucket(token: str) -> int:
    return int.from_bytes(hashlib.md5(token.encode()).digest()[:4], "little") % TEXT_DIM


class FakeModel:
    def __init__(
        self,
        modality: str,
        bits: int,
        input_shape: tuple[int, ...],
        seed: int = 0,
        metrics: dict[str, Any] | None = None,
    ) -> None:
        self.modality = modality
        self.bits = bits
        self.input_shape = tuple(input_shape)
        self.seed = seed
        self.metrics = dict(metrics or {"loss": 0.5, "seed": seed})
        dim = TEXT_DIM if modality == "text" else int(np.prod(self.input_shape))
        rng = np.random.RandomState(seed)
        self._w = rng.standard_normal((dim, bits)).astype(np.float32)
        self._mean = 0.0 if modality == "vector" else (0.5 if modality == "image" else 0.05)

    def featurize(self, items: Any) -> np.ndarray:
        if self.modality == "text":
            if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
                raise ValueError("text items must be a list of strings")
            x = np.zeros((len(items), TEXT_DIM), np.float32)
            for i, text in enumerate(items):
                for token in _TOKEN.findall(text.lower()):
                    x[i, _bucket(token)] += 1.0
            x = np.log1p(x)
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            return x / np.maximum(norm, 1e-6)
        arr = np.asarray(items)
        if self.modality == "image":
            if arr.dtype != np.uint8 or arr.shape[1:] != self.input_shape:
                raise ValueError(f"images must be uint8 (n, {self.input_shape}), got {arr.shape}")
            return arr.reshape(len(arr), -1).astype(np.float32) / 255.0
        if arr.ndim != 2 or arr.shape[1] != self.input_shape[0]:
            raise ValueError(f"vectors must be (n, {self.input_shape[0]}), got {arr.shape}")
        return arr.astype(np.float32)

    def _project(self, items: Any) -> np.ndarray:
        return (self.featurize(items) - self._mean) @ self._w

    def encode(self, items: Any) -> np.ndarray:
        return np.packbits(self._project(items) > 0, axis=1)

    def encode_features(self, features: np.ndarray) -> np.ndarray:
        return np.packbits((features - self._mean) @ self._w > 0, axis=1)

    def encode_continuous(self, items: Any) -> np.ndarray:
        return (1.0 / (1.0 + np.exp(-self._project(items)))).astype(np.float32)

    def denoise(self, items: Any) -> Any:
        x = self.featurize(items)
        if self.modality == "image":
            img = x.reshape(len(x), *self.input_shape[:2], -1)
            pad = np.pad(img, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
            h, w = self.input_shape[:2]
            blur = sum(pad[:, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0
            return blur.reshape(len(x), *self.input_shape).clip(0, 1).astype(np.float32)
        if self.modality == "text":
            out = []
            for text in items:
                counts: dict[str, int] = {}
                for token in _TOKEN.findall(text.lower()):
                    counts[token] = counts.get(token, 0) + 1
                total = sum(counts.values()) or 1
                top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
                out.append([(t, c / total) for t, c in top])
            return out
        return x.copy()

    def reconstruct(self, features: np.ndarray) -> np.ndarray:
        # shrink towards the mean: a field r(x) - x that points inwards, like a denoiser's
        x = np.asarray(features, dtype=np.float32)
        return (0.5 * x + 0.5 * self._mean).astype(np.float32)

    def tangents(self, items: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        # d sigmoid(Wx) / dx = diag(s (1 - s)) W^T, exactly
        s = self.encode_continuous(items)
        jac = (s * (1 - s))[:, :, None] * self._w.T[None]
        _, values, vt = np.linalg.svd(jac, full_matrices=False)
        return values[:, :k].astype(np.float32), vt[:, :k].astype(np.float32)

    def to(self, device: str) -> FakeModel:
        return self

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        spec = {
            "modality": self.modality,
            "bits": self.bits,
            "input_shape": list(self.input_shape),
            "seed": self.seed,
            "metrics": self.metrics,
        }
        (directory / "fake.json").write_text(json.dumps(spec))


def load_fake(directory: Path, device: str = "cpu") -> FakeModel:
    spec = json.loads((Path(directory) / "fake.json").read_text())
    return FakeModel(
        spec["modality"], spec["bits"], tuple(spec["input_shape"]), spec["seed"], spec["metrics"]
    )


class FakeBackend:
    """Settings: bits, epochs, seed, sleep (seconds per epoch), fail (raise in training)."""

    KNOWN = ("bits", "epochs", "seed", "sleep", "fail")

    def load(self, directory: Path, device: str) -> FakeModel:
        return load_fake(directory, device)

    def validate(self, settings: dict[str, Any]) -> None:
        from service.errors import InvalidInput

        for key in settings:
            if key not in self.KNOWN:
                raise InvalidInput(f"unknown training setting {key!r}", f"settings.{key}")
        problem = CODE_WIDTHS.problem(settings.get("bits", 16))
        if problem is not None:
            raise InvalidInput(problem, "settings.bits")

    def train(
        self,
        modality: str,
        items: Any,
        ids: Sequence[str],
        settings: dict[str, Any],
        progress: Any,
    ) -> FakeModel:
        epochs = int(settings.get("epochs", 2))
        for epoch in range(1, epochs + 1):
            time.sleep(float(settings.get("sleep", 0.0)))
            progress({"stage": "finetune", "epoch": epoch, "epochs": epochs, "loss": 1.0 / epoch})
        if settings.get("fail"):
            raise RuntimeError("training diverged (asked to fail)")
        shape: tuple[int, ...] = () if modality == "text" else tuple(np.asarray(items).shape[1:])
        seed = int(settings.get("seed", 1))
        return FakeModel(modality, int(settings.get("bits", 16)), shape, seed, {"loss": 0.1})


def held_items(state: Any) -> dict[str, dict[str, Any]]:
    """id -> metadata of every item a ``CollectionState`` holds in memory."""
    ptrs, records = state.items.locate(state.items.nums())
    return {records.id(p): records.metadata(p) for p in ptrs.tolist()}


# factories ---------------------------------------------------------------------------------
WORDS = (
    "space orbit rocket launch nasa moon planet hockey goal team season player game puck "
    "engine car dealer drive brake wheel god church faith bible belief"
).split()


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.RandomState(seed)
    topics = [WORDS[i : i + 6] for i in range(0, 24, 6)]
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        out.append(" ".join(rng.choice(topic, size=8)))
    return out


def png_b64(pixels: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def make_images(n: int, shape: tuple[int, int] = (28, 28), seed: int = 0) -> np.ndarray:
    return np.random.RandomState(seed).randint(0, 256, size=(n, *shape)).astype(np.uint8)


ADMIN = {"Authorization": "Bearer test-token"}


def wait_for_job(client: Any, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll a retraining job (through a TestClient or an httpx.Client) until it is final."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def seed_collections(data_dir: Path) -> None:
    """A data dir with three served collections: docs (text, 32 bits), digits (28x28 images,
    16 bits), vecs (8-d vectors, 16 bits), each with a few items."""
    from service.config import InputLimits
    from service.registry import NewItem, Registry
    from service.storage import open_storage

    storage = open_storage(make_settings(data_dir))
    store = storage.store
    registry = Registry(store, FakeBackend(), data_dir, "cpu", InputLimits(), storage.index_factory)
    registry.create("docs", "text", {"bits": 32, "description": "test texts"})
    registry.install_model("docs", FakeModel("text", 32, ()))
    texts = make_texts(40)
    registry.upsert(
        "docs",
        [
            NewItem(f"t{i:03d}", t, {"topic": i % 4, "even": i % 2 == 0}, "x")
            for i, t in enumerate(texts)
        ],
    )
    registry.create("digits", "image", {"bits": 16, "image_shape": [28, 28]})
    registry.install_model("digits", FakeModel("image", 16, (28, 28)))
    images = make_images(20)
    registry.upsert(
        "digits",
        [NewItem(f"img{i}", png_b64(im), {"label": i % 10}, "x") for i, im in enumerate(images)],
    )
    registry.create("vecs", "vector", {"bits": 16, "dim": 8})
    registry.install_model("vecs", FakeModel("vector", 16, (8,)))
    vecs = np.random.RandomState(1).standard_normal((30, 8))
    registry.upsert("vecs", [NewItem(f"v{i}", v.tolist(), {}, "x") for i, v in enumerate(vecs)])
    store.close()


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``seed_collections`` run once per session (seconds on Milvus Lite); tests get copies."""
    template = tmp_path_factory.mktemp("seeded")
    seed_collections(template)
    return template


@pytest.fixture
def data_dir(tmp_path: Path, seeded_template: Path) -> Path:
    shutil.copytree(seeded_template, tmp_path, dirs_exist_ok=True)
    return tmp_path


def make_settings(data_dir: Path, **overrides: Any) -> Any:
    from service.config import Settings

    base: dict[str, Any] = {
        "data_dir": data_dir,
        "device": "cpu",
        "admin_token": "test-token",
        "sqlite_synchronous": "NORMAL",  # tests do not need power-loss durability
        "batch_max_wait_ms": 0.0,
        "backend": TEST_BACKEND,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def client(data_dir: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from service.main import create_app

    app = create_app(make_settings(data_dir), backend=FakeBackend())
    with TestClient(app) as c:
        yield c


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path behind every fd os.fsync is given, in order; tests may append markers of their
    own to the same list. Needs /proc to name an fd."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name an fd")
    paths: list[str] = []
    fsync = os.fsync

    def record(fd: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    return paths
