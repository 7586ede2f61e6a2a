"""Encode and denoise endpoints."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.conftest import FakeModel, make_images, make_texts, png_b64
from training.features import VectorFeaturizer


def test_encode_matches_the_model_and_packbits_order(client: TestClient) -> None:
    texts = make_texts(5)
    r = client.post(
        "/v1/collections/docs/encode",
        json={"items": [{"text": t} for t in texts], "continuous": True},
    )
    assert r.status_code == 200
    out = r.json()
    model = FakeModel("text", 32, ())
    assert out["codes"] == [c.tobytes().hex() for c in model.encode(texts)]
    cont = np.asarray(out["continuous"])
    assert cont.shape == (5, 32) and cont.min() >= 0 and cont.max() <= 1
    # the code is the continuous activations thresholded at 0.5, in numpy.packbits order
    assert [c.tobytes().hex() for c in np.packbits(cont > 0.5, axis=1)] == out["codes"]
    r = client.post("/v1/collections/docs/encode", json={"items": [{"text": "x"}]}).json()
    assert r["continuous"] is None and r["bits"] == 32 and r["model_version"] == 1


def test_encode_errors(client: TestClient) -> None:
    r = client.post("/v1/collections/docs/encode", json={"items": [{"vector": [1.0]}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "items[0].vector"
    r = client.post("/v1/collections/docs/encode", json={"items": []})
    assert r.status_code == 422 and r.json()["error"]["field"] == "items"
    r = client.post("/v1/collections/vecs/encode", json={"items": [{"vector": [1.0] * 9}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "items[0].vector"


def test_a_vector_the_featuriser_refuses_is_a_422_naming_it_and_is_not_stored(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = client.app.state.runtime.registry.get("vecs").serving.model  # type: ignore[attr-defined]
    # a Gaussian model's standardisation over a tiny spread: 1e37 overflows to inf in it
    narrow = VectorFeaturizer(np.zeros(8, np.float32), np.full(8, 0.01, np.float32))
    monkeypatch.setattr(model, "featurize", narrow.transform)
    near, far = [0.001] * 8, [1e37, -1e37] * 4
    r = client.post(
        "/v1/collections/vecs/encode",
        json={"items": [{"vector": near}, {"vector": far}], "continuous": True},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "items[1].vector", r.text
    r = client.post(
        "/v1/collections/vecs/items",
        json={"items": [{"id": "near", "vector": near}, {"id": "far", "vector": far}]},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "items[1].vector", r.text
    assert client.get("/v1/collections/vecs/items/near").status_code == 404  # all or nothing
    # named by its place in the request, when an earlier duplicate was dropped before encoding
    dup = [{"id": "near", "vector": near}, {"id": "near", "vector": near}]
    r = client.post(
        "/v1/collections/vecs/items", json={"items": [*dup, {"id": "f", "vector": far}]}
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "items[2].vector", r.text
    r = client.post("/v1/collections/vecs/search", json={"vector": far, "k": 3})
    assert r.status_code == 422 and r.json()["error"]["field"] == "vector", r.text
    r = client.post("/v1/collections/vecs/encode", json={"items": [{"vector": near}]})
    assert r.status_code == 200


def test_denoise_images_text_vectors(client: TestClient) -> None:
    noisy = make_images(2, seed=3)
    r = client.post(
        "/v1/collections/digits/denoise", json={"items": [{"image": png_b64(x)} for x in noisy]}
    )
    assert r.status_code == 200
    for item in r.json()["items"]:
        img = Image.open(io.BytesIO(base64.b64decode(item["image"])))
        assert img.format == "PNG" and img.size == (28, 28)
    r = client.post(
        "/v1/collections/docs/denoise", json={"items": [{"text": "rocket rocket orbit"}]}
    )
    terms = r.json()["items"][0]["terms"]
    assert terms[0]["term"] == "rocket" and terms[0]["weight"] > terms[1]["weight"]
    r = client.post("/v1/collections/vecs/denoise", json={"items": [{"vector": [1.0] * 8}]})
    assert len(r.json()["items"][0]["vector"]) == 8
    r = client.post("/v1/collections/digits/denoise", json={"items": [{"image": "aGVsbG8="}]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "items[0].image"


def test_denoise_refuses_an_item_whose_reconstruction_is_not_finite(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = client.app.state.runtime.registry.get("vecs").serving.model  # type: ignore[attr-defined]

    def overflowing(items: np.ndarray) -> np.ndarray:
        # what the trained network does: a float32 input near 3.4e38 overflows inside it to NaN
        x = np.asarray(items, dtype=np.float32)
        return np.where(np.abs(x) > 1e30, np.float32(np.nan), x)

    monkeypatch.setattr(model, "denoise", overflowing)
    huge = {"items": [{"vector": [0.5] * 8}, {"vector": [3e38] * 8}]}
    r = client.post("/v1/collections/vecs/denoise", json=huge)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "items[1].vector"
    r = client.post("/v1/collections/vecs/denoise", json={"items": [{"vector": [0.5] * 8}]})
    assert r.status_code == 200 and r.json()["items"][0]["vector"] == [0.5] * 8
