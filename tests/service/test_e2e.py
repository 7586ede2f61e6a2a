"""End to end with real trained models: the real server (uvicorn, subprocess) and httpx.

Slices of the demo corpora embedded in the package (Python's documentation, scikit-learn's 8x8
digits, word counts of the documentation), so it runs on a clean clone; tiny training settings so
every model trains in seconds. Covers: upsert, first model by admin retraining, search by text,
image, vector, id and code, encode, denoise, retraining while searches continue, restart.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from sklearn.feature_extraction.text import CountVectorizer

from tests.conftest import ADMIN, png_b64, wait_for_job
from tests.service import serve
from training.demo_data import demo_images, demo_text

TINY = {"bits": 16, "hidden_dims": [64], "pretrain": "none", "epochs": 3, "neighbours": 5}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.local_backend("the real server over the SQLite store, which the test opens"),
]


def _news(n: int) -> list[dict[str, Any]]:
    docs = demo_text()
    split, names = docs.train, docs.label_names
    assert split.labels is not None
    return [
        {
            "id": split.ids[i],
            "text": str(split.items[i])[:2000],
            "metadata": {"group": names[int(np.argmax(split.labels[i]))]},
        }
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("e2e") / "data"
    path.mkdir()
    return path


def _digits() -> tuple[np.ndarray, np.ndarray]:
    split = demo_images().train
    assert split.labels is not None
    return np.asarray(split.items)[:200], np.argmax(split.labels[:200], axis=1)


def _word_counts() -> np.ndarray:
    """Word counts of 150 documents over 100 terms: the vector path's multinomial case."""
    texts = [str(t) for t in demo_text().train.items[:150]]
    return np.asarray(CountVectorizer(max_features=100).fit_transform(texts).toarray())


def _prebuild(data_dir: Path) -> None:
    """Image and vector collections with real tiny models, trained in this process before the
    server starts (the text collection gets its models from the admin API instead)."""
    from service.backend import TrainingBackend
    from service.config import InputLimits
    from service.registry import Registry
    from service.sqlite_store import SqliteStore
    from training.config import TrainConfig
    from training.data import Dataset, Split
    from training.train import train

    store = SqliteStore(data_dir / "bitseek.sqlite3")
    registry = Registry(store, TrainingBackend(), data_dir, "cpu", InputLimits())
    digits, _ = _digits()
    vectors = _word_counts().astype(np.float32)
    for name, modality, items, spec in (
        ("digits", "image", digits, {"image_shape": list(digits.shape[1:])}),
        ("counts", "vector", vectors, {"dim": vectors.shape[1]}),
    ):
        ids = [f"{name}-{i}" for i in range(len(items))]
        model = train(
            Dataset(modality, Split(items, ids, None), None, [], name), TrainConfig.from_dict(TINY)
        )  # type: ignore[arg-type]
        registry.create(name, modality, {"bits": 16, **spec})
        registry.install_model(name, model)
    store.close()


@pytest.fixture(scope="module")
def running(data_dir: Path) -> Iterator[dict[str, Any]]:
    _prebuild(data_dir)
    proc, url = serve.start(data_dir, fake=False)
    state: dict[str, Any] = {"proc": proc, "url": url}
    yield state
    serve.stop(state["proc"])


@pytest.fixture
def server(running: dict[str, Any]) -> str:
    return str(running["url"])


def _retrain(client: httpx.Client, collection: str) -> str:
    r = client.post(
        f"/v1/admin/collections/{collection}/retrain", json={"settings": TINY}, headers=ADMIN
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def test_end_to_end_with_real_models(server: str, data_dir: Path) -> None:
    client = httpx.Client(base_url=server, timeout=60)
    news = _news(240)
    digits, labels = _digits()
    counts = _word_counts()
    body = {"name": "news", "modality": "text", "bits": 16}
    assert client.post("/v1/collections", json=body, headers=ADMIN).status_code == 201
    for start in range(0, len(news), 100):
        r = client.post("/v1/collections/news/items", json={"items": news[start : start + 100]})
        assert r.status_code == 200 and r.json()["model_version"] is None
    # the first text model, trained by the admin API in a worker process
    job = wait_for_job(client, _retrain(client, "news"), timeout=240)
    assert job["state"] == "succeeded", job
    assert job["progress"] and job["metrics"] is not None
    assert client.get("/v1/collections/news").json()["active_version"] == 1
    images = [
        {"id": f"m{i}", "image": png_b64(x), "metadata": {"digit": int(y)}}
        for i, (x, y) in enumerate(zip(digits, labels, strict=True))
    ]
    r = client.post("/v1/collections/digits/items", json={"items": images})
    assert r.status_code == 200 and r.json()["model_version"] == 1
    vectors = [{"id": f"r{i}", "vector": v.astype(float).tolist()} for i, v in enumerate(counts)]
    assert client.post("/v1/collections/counts/items", json={"items": vectors}).status_code == 200

    # search by text, id, code; encode; denoise
    text_hit = client.post("/v1/collections/news/search", json={"text": news[3]["text"], "k": 5})
    assert text_hit.status_code == 200
    hits = text_hit.json()["hits"]
    assert hits[0]["distance"] == 0 and news[3]["id"] in [
        h["id"] for h in hits if h["distance"] == 0
    ]
    code = client.post(
        "/v1/collections/news/encode",
        json={"items": [{"text": news[3]["text"]}], "continuous": True},
    ).json()
    assert len(code["codes"][0]) == 4 and len(code["continuous"][0]) == 16
    # a text with no word of the vocabulary would get the empty document's arbitrary hits
    unknown = client.post("/v1/collections/news/search", json={"text": "qzxv wvqz", "k": 5})
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "text"
    by_code = client.post("/v1/collections/news/search", json={"code": code["codes"][0], "k": 5})
    by_id = client.post("/v1/collections/news/search", json={"id": news[3]["id"], "k": 5})
    assert by_code.json()["hits"] == by_id.json()["hits"] == hits
    terms = client.post(
        "/v1/collections/news/denoise", json={"items": [{"text": news[0]["text"]}]}
    ).json()["items"][0]["terms"]
    assert len(terms) > 0 and all(isinstance(t["term"], str) for t in terms)
    # image: search and denoise a corrupted digit
    noisy = digits[7].copy()
    noisy[np.random.RandomState(0).rand(*noisy.shape) < 0.2] = 255
    r = client.post("/v1/collections/digits/search", json={"image": png_b64(digits[7]), "k": 3})
    assert r.json()["hits"][0]["distance"] == 0
    r = client.post("/v1/collections/digits/denoise", json={"items": [{"image": png_b64(noisy)}]})
    png = Image.open(io.BytesIO(base64.b64decode(r.json()["items"][0]["image"])))
    assert png.size == (digits.shape[2], digits.shape[1])
    # vector
    r = client.post("/v1/collections/counts/search", json={"vector": vectors[9]["vector"], "k": 3})
    assert r.json()["hits"][0]["distance"] == 0

    # retrain while searches continue: every search answered, old then new version
    answered: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def searcher() -> None:
        with httpx.Client(base_url=server, timeout=60) as c:
            while not stop.is_set():
                s = c.post("/v1/collections/news/search", json={"id": news[5]["id"], "k": 3})
                if s.status_code != 200:
                    failures.append(s.text)
                else:
                    answered.append(s.json()["model_version"])
                # a steady stream, not a busy loop that starves the training worker of the 2 CPUs
                time.sleep(0.02)

    thread = threading.Thread(target=searcher)
    thread.start()
    job = wait_for_job(client, _retrain(client, "news"), timeout=240)
    time.sleep(0.5)
    stop.set()
    thread.join()
    assert job["state"] == "succeeded" and job["version"] == 2
    assert not failures and answered[0] == 1 and answered[-1] == 2
    versions = client.get("/v1/admin/collections/news/models", headers=ADMIN).json()
    assert [v["version"] for v in versions["data"]] == [1, 2]
    client.close()


def test_restart_finds_every_item(running: dict[str, Any], data_dir: Path) -> None:
    news = _news(240)
    serve.stop(running["proc"])  # SIGTERM: a graceful stop, then a fresh process
    proc, url = serve.start(data_dir, fake=False)
    running["proc"] = proc
    with httpx.Client(base_url=url, timeout=60) as client:
        info = {c["name"]: c for c in client.get("/v1/collections").json()["data"]}
        assert info["news"]["items"] == 240 and info["news"]["active_version"] == 2
        assert info["digits"]["items"] == 200 and info["counts"]["items"] == 150
        for doc in news:
            item = client.get(f"/v1/collections/news/items/{doc['id']}")
            assert item.status_code == 200 and item.json()["text"] == doc["text"]
        everything = client.post(
            "/v1/collections/news/search", json={"code": "0000", "max_distance": 16}
        ).json()
        assert {h["id"] for h in everything["hits"]} == {d["id"] for d in news}
