"""The web page's HTML, assets and API additions, in process (TestClient, fake models): pages
render from the same functions as their JSON twins, assets are shipped and hashed, nothing points
off the server, and the new endpoints answer on their own."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from service import insights as insights_module
from tests.conftest import ADMIN

PAGES = [
    "/",
    "/c/docs",
    "/c/docs?text=rocket+moon",
    "/c/digits",
    "/c/digits/model",
    "/c/digits/denoise?id=img3",
    "/c/docs/denoise?id=t001",
    "/c/vecs/model",
    "/admin",
]
REF = re.compile(r'(?:src|href|action)="([^"]*)"')


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_and_points_only_at_the_server(client: Any, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in r.text and 'name="viewport"' in r.text
    assert re.search(r'<link rel="alternate" type="application/json" href="/', r.text)
    for ref in REF.findall(r.text):
        assert ref.startswith(("/", "#", "data:image/png;base64,")), ref  # no CDN, no host


def test_search_page_shows_what_its_json_twin_returns(client: Any) -> None:
    page = client.get("/c/docs", params={"text": "rocket moon", "k": "5"})
    twin = client.get("/v1/collections/docs/search", params={"text": "rocket moon", "k": "5"})
    assert twin.status_code == 200
    ids = re.findall(r'<li class="hit card" data-id="([^"]+)"', page.text)
    assert ids == [h["id"] for h in twin.json()["hits"]]
    assert 'href="/v1/collections/docs/search?text=rocket+moon&amp;k=5"' in page.text


def test_search_page_shows_an_error_next_to_its_field(client: Any) -> None:
    page = client.get("/c/docs", params={"text": "rocket", "k": "0"})
    slot = re.search(r'data-error-for="k" role="alert">([^<]*)<', page.text)
    assert slot and "greater than or equal to 1" in slot.group(1)
    assert re.search(r'data-error-for="text" role="alert"><', page.text)  # the others are empty


def test_unknown_collection_page_is_a_readable_404(client: Any) -> None:
    r = client.get("/c/nope")
    assert r.status_code == 404 and "no collection named &#39;nope&#39;" in r.text


def test_get_search_twin_parses_filters_and_names_bad_parameters(client: Any) -> None:
    r = client.get("/v1/collections/docs/search", params={"text": "rocket", "filter": "topic=0"})
    assert r.status_code == 200 and all(h["metadata"]["topic"] == 0 for h in r.json()["hits"])
    r = client.get("/v1/collections/docs/search", params={"text": "rocket", "filter": "topic"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "filter"
    r = client.get("/v1/collections/vecs/search", params={"vector": "1,x"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "vector"


def test_search_include_adds_code_preview_and_payload_only_when_asked(client: Any) -> None:
    plain = client.post("/v1/collections/docs/search", json={"text": "rocket", "k": 3}).json()
    assert all(h.keys() == {"id", "distance", "metadata"} for h in plain["hits"])
    body = {"text": "rocket", "k": 3, "include": ["code", "preview", "payload"]}
    hits = client.post("/v1/collections/docs/search", json=body).json()["hits"]
    for hit in hits:
        item = client.get(f"/v1/collections/docs/items/{hit['id']}").json()
        assert hit["code"] == item["code"] and hit["payload"] == item["text"]
        assert item["text"].startswith(hit["preview"].rstrip("\u2026"))
    images = client.post(
        "/v1/collections/digits/search", json={"id": "img1", "k": 2, "include": ["preview"]}
    ).json()["hits"]
    thumb = Image.open(io.BytesIO(base64.b64decode(images[0]["preview"])))
    assert max(thumb.size) <= 64
    bad = client.post("/v1/collections/docs/search", json={"text": "x", "include": ["everything"]})
    assert bad.status_code == 422 and bad.json()["error"]["field"].startswith("include")


def test_item_image_serves_png_and_thumbnails(client: Any) -> None:
    r = client.get("/v1/collections/digits/items/img2/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (28, 28)
    small = client.get("/v1/collections/digits/items/img2/image", params={"size": 10})
    assert max(Image.open(io.BytesIO(small.content)).size) == 10
    text = client.get("/v1/collections/docs/items/t001/image")
    assert text.status_code == 422 and text.json()["error"]["field"] == "collection"
    assert client.get("/v1/collections/digits/items/nope/image").status_code == 404


def test_model_summary_reads_recorded_evaluations(client: Any) -> None:
    r = client.get("/v1/collections/digits/model")
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == 1 and body["bits"] == 16 and body["trained_at"] > 0
    from service.routes.visuals import evaluations

    recorded = {"d": {"methods": {"model": {"k": 100, "precision_at_k": 0.8},
                                  "pca_itq": {"k": 100, "precision_at_k": 0.6}}}}  # fmt: skip
    [e] = evaluations({"evaluation": recorded})
    assert (e.k, e.precision_at_k, e.baselines) == (100, 0.8, {"pca_itq": 0.6})


def test_insights_are_computed_once_per_model_version(
    client: Any, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    compute = insights_module.compute_insights

    def counted(*args: Any) -> dict[str, Any]:
        calls.append(args[0].name)
        return compute(*args)

    monkeypatch.setattr("service.routes.visuals.compute_insights", counted)
    first = client.get("/v1/collections/digits/model/insights").json()
    assert client.get("/c/digits/model").status_code == 200  # the page reads the same cache
    assert client.get("/v1/collections/digits/model/insights").json() == first
    assert calls == ["digits"]
    assert (data_dir / "collections" / "digits" / "insights" / "v1.json").exists()
    assert len(first["bit_rates"]) == 16 and len(first["map"]["x"]) == 20
    assert set(first["map"]["color"]) == {"label"}
    assert len(first["reconstructions"]) == 8 and len(first["tangents"]["directions"]) == 6
    assert len(first["field"]["grid"]) == insights_module.FIELD_GRID**2
    text = client.get("/v1/collections/docs/model/insights").json()
    assert text["tangents"] is None and text["field"] is None and text["map"]["color"]


def test_tangents_for_a_chosen_image(client: Any) -> None:
    r = client.get("/v1/collections/digits/model/tangents", params={"item": "img4"})
    assert r.status_code == 200
    values = r.json()["singular_values"]
    assert values == sorted(values, reverse=True) and len(r.json()["directions"]) == 6
    r = client.get("/v1/collections/docs/model/tangents", params={"item": "t001"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "item"


def test_static_assets_are_hashed_and_cached_for_a_year(client: Any) -> None:
    page = client.get("/").text
    url = re.search(r'href="(/-/static/app\.css\?h=([0-9a-f]{12}))"', page)
    assert url
    r = client.get(url.group(1))
    assert r.status_code == 200 and "immutable" in r.headers["cache-control"]
    stale = client.get("/-/static/app.css?h=000000000000")
    assert stale.status_code == 200 and stale.headers["cache-control"] == "no-cache"
    again = client.get(url.group(1), headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/-/static/../templates/base.html").status_code == 404
    assert client.get("/-/static/nope.js").status_code == 404


def test_api_docs_load_their_assets_from_the_server(client: Any) -> None:
    for path, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(path).text
        assert "cdn" not in html and "fonts.googleapis" not in html
        src = re.search(rf'src="(/-/static/vendor/{re.escape(asset)}\?h=[0-9a-f]+)"', html)
        assert src, html
        js = client.get(src.group(1))
        assert js.status_code == 200 and len(js.content) > 100_000
        assert b"cdn.redoc.ly" not in js.content


def test_admin_page_holds_no_token_and_the_api_refuses_without_one(client: Any) -> None:
    page = client.get("/admin").text
    assert "test-token" not in page
    assert re.search(r'<div id="admin-views" hidden>', page)
    assert client.get("/v1/admin/collections/docs/models").status_code == 401
    assert client.get("/v1/admin/collections/docs/models", headers=ADMIN).status_code == 200
