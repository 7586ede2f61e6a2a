"""Items API: upsert / read / delete, and every kind of bad input leaving nothing changed."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from tests.conftest import ADMIN, FakeBackend, FakeModel, make_images, make_settings, png_b64


def _count(client: TestClient, collection: str) -> int:
    return int(client.get(f"/v1/collections/{collection}").json()["items"])


def test_upsert_read_overwrite_delete(client: TestClient) -> None:
    r = client.post(
        "/v1/collections/docs/items",
        json={"items": [{"id": "new/1", "text": "rocket launch", "metadata": {"src": "a"}}]},
    )
    body = r.json()
    assert r.status_code == 200 and body.pop("seq") > 0
    assert body == {"upserted": 1, "model_version": 1}
    item = client.get("/v1/collections/docs/items/new/1").json()
    assert item["text"] == "rocket launch" and item["metadata"] == {"src": "a"}
    assert len(item["code"]) == 8 and item["model_version"] == 1
    assert _count(client, "docs") == 41
    # the same id overwrites (and the last duplicate of a batch wins)
    items = [{"id": "new/1", "text": "first"}, {"id": "new/1", "text": "hockey puck goal"}]
    r = client.post("/v1/collections/docs/items", json={"items": items})
    assert r.json()["upserted"] == 1
    assert client.get("/v1/collections/docs/items/new/1").json()["text"] == "hockey puck goal"
    assert _count(client, "docs") == 41
    # an overwritten duplicate is checked too, and refused by its own field
    items = [{"id": "new/1", "text": "   "}, {"id": "new/1", "text": "fine"}]
    r = client.post("/v1/collections/docs/items", json={"items": items})
    assert r.status_code == 422 and r.json()["error"]["field"] == "items[0].text"
    assert client.get("/v1/collections/docs/items/new/1").json()["text"] == "hockey puck goal"
    hit = client.post("/v1/collections/docs/search", json={"text": "hockey puck goal", "k": 1})
    assert hit.json()["hits"][0]["distance"] == 0
    assert client.delete("/v1/collections/docs/items/new/1").status_code == 200
    assert client.get("/v1/collections/docs/items/new/1").status_code == 404
    assert client.delete("/v1/collections/docs/items/new/1").status_code == 404
    assert _count(client, "docs") == 40
    r = client.post("/v1/collections/docs/search", json={"text": "hockey puck goal", "k": 50})
    assert "new/1" not in {h["id"] for h in r.json()["hits"]}


def test_image_and_vector_items_round_trip(client: TestClient) -> None:
    pixels = make_images(1, seed=5)[0]
    r = client.post(
        "/v1/collections/digits/items", json={"items": [{"id": "x", "image": png_b64(pixels)}]}
    )
    assert r.status_code == 200
    stored = client.get("/v1/collections/digits/items/x").json()["image"]
    from io import BytesIO

    from PIL import Image

    back = np.asarray(Image.open(BytesIO(base64.b64decode(stored))))
    assert np.array_equal(back, pixels)  # PNG is lossless
    # a JPEG of another size is converted and resized to the collection's 28x28 grey
    rgb = np.random.RandomState(0).randint(0, 255, (40, 30, 3)).astype(np.uint8)
    r = client.post(
        "/v1/collections/digits/items",
        json={"items": [{"id": "j", "image": png_b64(rgb, "JPEG")}]},
    )
    assert r.status_code == 200
    vec = [0.5] * 8
    client.post("/v1/collections/vecs/items", json={"items": [{"id": "q", "vector": vec}]})
    assert client.get("/v1/collections/vecs/items/q").json()["vector"] == vec


def test_multipart_image_upload(client: TestClient) -> None:
    raw = base64.b64decode(png_b64(make_images(1, seed=9)[0]))
    r = client.post(
        "/v1/collections/digits/items/upload",
        files={"file": ("x.png", raw, "image/png")},
        data={"id": "up", "metadata": '{"label": 3}'},
    )
    assert r.status_code == 200, r.text
    assert client.get("/v1/collections/digits/items/up").json()["metadata"] == {"label": 3}
    r = client.post(
        "/v1/collections/digits/items/upload",
        files={"file": ("x.png", b"not an image", "image/png")},
        data={"id": "bad"},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "file"
    assert client.get("/v1/collections/digits/items/bad").status_code == 404


BAD_ITEMS: list[tuple[str, dict[str, Any], str, str]] = [
    ("docs", {"id": "a", "image": png_b64(make_images(1)[0])}, "items[1].image", "text items"),
    ("docs", {"id": "a", "text": "   "}, "items[1].text", "empty"),
    ("docs", {"id": "a", "text": "x", "vector": [1.0]}, "items[1]", "exactly one"),
    ("docs", {"id": "a"}, "items[1]", "give the item"),
    ("docs", {"id": "", "text": "x"}, "items[1].id", ""),
    ("docs", {"id": "a", "text": "x", "metadata": {"k": {"n": 1}}}, "items[1].metadata.k", ""),
    ("docs", {"id": "a", "text": "x", "colour": "red"}, "items[1].colour", ""),
    ("digits", {"id": "a", "image": "!!!not base64"}, "items[1].image", "base64"),
    (
        "digits",
        {"id": "a", "image": base64.b64encode(b"hello").decode()},
        "items[1].image",
        "undecodable",
    ),
    ("vecs", {"id": "a", "vector": [1.0, 2.0]}, "items[1].vector", "length 2"),
    ("vecs", {"id": "a", "vector": ["x"] * 8}, "items[1].vector[0]", ""),
    # finite in float64, infinite once cast to the float32 we store
    ("vecs", {"id": "a", "vector": [1e300] * 8}, "items[1].vector", "float32"),
    ("vecs", {"id": "a", "vector": [-3.5e38] + [0.0] * 7}, "items[1].vector", "float32"),
]


@pytest.mark.parametrize(("collection", "bad", "field", "words"), BAD_ITEMS)
def test_bad_items_are_rejected_and_nothing_is_stored(
    client: TestClient, collection: str, bad: dict[str, Any], field: str, words: str
) -> None:
    before = _count(client, collection)
    good = {
        "docs": {"id": "good", "text": "fine text"},
        "digits": {"id": "good", "image": png_b64(make_images(1)[0])},
        "vecs": {"id": "good", "vector": [0.0] * 8},
    }[collection]
    r = client.post(f"/v1/collections/{collection}/items", json={"items": [good, bad]})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["field"] == field
    assert words in error["message"]
    assert _count(client, collection) == before
    assert client.get(f"/v1/collections/{collection}/items/good").status_code == 404


def test_malformed_json_and_empty_batches(client: TestClient) -> None:
    r = client.post(
        "/v1/collections/docs/items",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and r.json()["error"]["type"] == "InvalidInput"
    r = client.post("/v1/collections/docs/items", json={"items": []})
    assert r.status_code == 422 and r.json()["error"]["field"] == "items"


def test_batch_and_body_limits(data_dir: Path) -> None:
    settings = make_settings(data_dir, max_batch_items=3, max_body_bytes=4000, max_text_chars=50)
    with TestClient(create_app(settings, backend=FakeBackend())) as c:
        items = [{"id": str(i), "text": "a b"} for i in range(4)]
        r = c.post("/v1/collections/docs/items", json={"items": items})
        assert r.status_code == 422 and r.json()["error"]["field"] == "items"
        assert "limit of 3" in r.json()["error"]["message"]
        r = c.post("/v1/collections/docs/items", json={"items": [{"id": "l", "text": "x" * 51}]})
        assert r.status_code == 422 and "limit is 50" in r.json()["error"]["message"]
        r = c.post("/v1/collections/docs/items", json={"items": [{"id": "b", "text": "y" * 5000}]})
        assert r.status_code == 413
        assert r.json()["limit_bytes"] == 4000 and r.json()["error"]["field"] == "body"

        def chunks() -> Any:  # no Content-Length: the limit is enforced while streaming
            yield b'{"items": [{"id": "s", "text": "'
            for _ in range(10):
                yield b"z" * 1000
            yield b'"}]}'

        r = c.post(
            "/v1/collections/docs/items",
            content=chunks(),
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 413
        assert c.get("/v1/collections/docs").json()["items"] == 40


# JSON escapes can carry lone surrogates that no UTF-8 encoder accepts: 4xx, never 500
SURROGATES = [
    ("items", '{"items":[{"id":"s1","text":"hello \\ud800 world"}]}', "items[0].text"),
    (
        "items",
        '{"items":[{"id":"s1","text":"ok","metadata":{"k":"a\\udfff"}}]}',
        "items[0].metadata",
    ),
    ("search", '{"text":"hello \\ud800 world","k":3}', "text"),
    ("encode", '{"items":[{"text":"x \\ud800"}]}', "items[0].text"),
    ("denoise", '{"items":[{"text":"x \\ud800"}]}', "items[0].text"),
]


@pytest.mark.parametrize(("route", "raw", "field"), SURROGATES)
def test_lone_surrogates_are_rejected_naming_the_field(
    client: TestClient, route: str, raw: str, field: str
) -> None:
    before = _count(client, "docs")
    r = client.post(
        f"/v1/collections/docs/{route}",
        content=raw,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field
    assert "surrogate" in r.json()["error"]["message"]
    assert _count(client, "docs") == before
    assert client.get("/v1/collections/docs/items/s1").status_code == 404


@pytest.mark.parametrize("meta", ['{"a": NaN}', '{"a": Infinity}', '{"a": 1e400}', '{"a": [1]}'])
def test_upload_metadata_is_as_strict_as_the_json_route(client: TestClient, meta: str) -> None:
    raw = base64.b64decode(png_b64(make_images(1)[0]))
    r = client.post(
        "/v1/collections/digits/items/upload",
        files={"file": ("a.png", raw, "image/png")},
        data={"id": "nanimg", "metadata": meta},
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "metadata"
    assert client.get("/v1/collections/digits/items/nanimg").status_code == 404
    # the JSON route refuses the same value
    body = (
        f'{{"items":[{{"id":"nanimg","image":"{png_b64(make_images(1)[0])}","metadata":{meta}}}]}}'
    )
    r = client.post(
        "/v1/collections/digits/items", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"id": "caf\xe9".encode("latin-1")}, "id"),
        ({"id": "m", "metadata": '{"k": "caf\xe9"}'.encode("latin-1")}, "metadata"),
    ],
)
def test_upload_fields_that_are_not_utf8_are_refused_by_name(
    client: TestClient, fields: dict[str, bytes | str], bad: str
) -> None:
    raw = base64.b64decode(png_b64(make_images(1)[0]))
    before = _count(client, "digits")
    r = client.post(
        "/v1/collections/digits/items/upload",
        files={"file": ("a.png", raw, "image/png")},
        data=fields,
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == bad and "UTF-8" in r.json()["error"]["message"]
    assert _count(client, "digits") == before
    # the same text in UTF-8 is stored as sent
    good = {k: v.decode("latin-1") if isinstance(v, bytes) else v for k, v in fields.items()}
    r = client.post(
        "/v1/collections/digits/items/upload",
        files={"file": ("a.png", raw, "image/png")},
        data=good,
    )
    assert r.status_code == 200, r.text
    item = client.get(f"/v1/collections/digits/items/{good['id']}").json()
    assert item["metadata"] == json.loads(good.get("metadata", "{}"))


def test_a_json_body_that_is_not_utf8_is_refused_naming_the_body(client: TestClient) -> None:
    body = '{"items": [{"id": "x", "text": "caf\xe9"}]}'.encode("latin-1")
    r = client.post(
        "/v1/collections/docs/items", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == "body" and "UTF-8" in r.json()["error"]["message"]
    assert client.get("/v1/collections/docs/items/x").status_code == 404


def test_an_item_reports_the_serving_models_code_after_a_failed_activation(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = client.app.state.runtime.registry  # type: ignore[attr-defined]
    before = client.get("/v1/collections/vecs/items/v1").json()
    version = registry.next_version("vecs")
    FakeModel("vector", 16, (8,), seed=42).save(registry.model_dir("vecs", version))

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError("database or disk is full")

    # the new version's codes are staged in the item rows, then its commit fails
    monkeypatch.setattr(registry.store, "set_codes", disk_full)
    with pytest.raises(OSError):
        registry.activate("vecs", version)
    assert client.get("/v1/collections/vecs").json()["active_version"] == 1
    after = client.get("/v1/collections/vecs/items/v1").json()
    assert (after["model_version"], after["code"]) == (1, before["code"])


def test_items_may_bring_codes_computed_elsewhere_by_the_serving_version(
    client: TestClient,
) -> None:
    encoded = client.post("/v1/collections/docs/encode", json={"items": [{"text": "rocket"}]})
    model_code = encoded.json()["codes"][0]
    given = format(int(model_code, 16) ^ 0xFFFFFFFF, "08x")  # not what the model would give
    item = {"id": "pre/1", "text": "rocket", "code": given, "model_version": 1}
    r = client.post(
        "/v1/collections/docs/items", json={"items": [item, {"id": "pre/2", "text": "rocket"}]}
    )
    assert r.status_code == 200, r.text
    assert client.get("/v1/collections/docs/items/pre/1").json()["code"] == given
    assert client.get("/v1/collections/docs/items/pre/2").json()["code"] == model_code
    r = client.post("/v1/collections/docs/search", json={"code": given, "max_distance": 0})
    assert "pre/1" in {hit["id"] for hit in r.json()["hits"]}
    # refused, naming the field, and nothing of the batch is stored
    before = _count(client, "docs")
    cases = [
        ({"code": given, "model_version": 7}, 409, "items[1].code", "model version 7"),
        ({"code": given + "00", "model_version": 1}, 422, "items[1].code", "40 bits"),
        ({"code": "zz" * 4, "model_version": 1}, 422, "items[1].code", "not hexadecimal"),
        ({"code": given}, 422, "items[1]", "code and model_version go together"),
        ({"model_version": 1}, 422, "items[1]", "code and model_version go together"),
    ]
    for extra, status, field, message in cases:
        items = [{"id": "fine", "text": "ok"}, {"id": "bad", "text": "rocket", **extra}]
        r = client.post("/v1/collections/docs/items", json={"items": items})
        assert r.status_code == status, (extra, r.text)
        error = r.json()["error"]
        assert error["field"] == field and message in error["message"], error
    assert _count(client, "docs") == before
    # a collection without a model yet has no version to match
    body = {"name": "bare", "modality": "text", "bits": 32}
    assert client.post("/v1/collections", json=body, headers=ADMIN).status_code == 201
    r = client.post("/v1/collections/bare/items", json={"items": [item]})
    assert r.status_code == 409 and "no model yet" in r.json()["error"]["message"]
