"""JsonBodyRoute: which endpoints take the one-pass body path, and that both paths answer alike."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.deps import AdminDep, RuntimeDep
from service.json_route import JsonBodyRoute, _lean_shape
from service.routes import denoise, encode, items, search
from service.schemas import SearchRequest
from tests.conftest import ADMIN


def _route(router: APIRouter, path: str, method: str) -> APIRoute:
    for route in router.routes:
        if isinstance(route, APIRoute) and route.path == path and method in route.methods:
            return route
    raise AssertionError(f"no {method} {path}")


def test_the_hot_json_endpoints_take_the_one_pass_path_and_the_rest_do_not() -> None:
    lean = [
        (search.router, "/collections/{collection}/search"),
        (items.router, "/collections/{collection}/items"),
        (encode.router, "/collections/{collection}/encode"),
        (denoise.router, "/collections/{collection}/denoise"),
    ]
    for router, path in lean:
        route = _route(router, path, "POST")
        assert isinstance(route, JsonBodyRoute)
        shape = _lean_shape(route)
        assert shape is not None and shape[0] == ["collection"] and shape[1] == "body"
    # a multipart upload and a read without a body keep FastAPI's handling
    for path, method in (
        ("/collections/{collection}/items/upload", "POST"),
        ("/collections/{collection}/items/{item_id:path}", "GET"),
    ):
        route = _route(items.router, path, method)
        assert isinstance(route, JsonBodyRoute) and _lean_shape(route) is None


def test_an_endpoint_with_another_dependency_or_a_query_parameter_is_left_to_fastapi() -> None:
    router = APIRouter(route_class=JsonBodyRoute)

    @router.post("/guarded/{name}", dependencies=[AdminDep])
    async def guarded(name: str, body: SearchRequest, runtime: RuntimeDep) -> Any:
        return None

    @router.post("/queried/{name}")
    async def queried(name: str, body: SearchRequest, runtime: RuntimeDep, page: int = 0) -> Any:
        return None

    @router.post("/numbered/{number}")
    async def numbered(number: int, body: SearchRequest, runtime: RuntimeDep) -> Any:
        return None  # a path parameter FastAPI would convert

    @router.post("/plain/{name}")
    async def plain(name: str, body: SearchRequest, runtime: RuntimeDep) -> Any:
        return None

    shapes = {r.path: _lean_shape(r) for r in router.routes if isinstance(r, JsonBodyRoute)}
    assert shapes["/guarded/{name}"] is None
    assert shapes["/queried/{name}"] is None
    assert shapes["/numbered/{number}"] is None
    assert shapes["/plain/{name}"] == (["name"], "body", SearchRequest, "runtime")


BAD_BODIES = [
    # (raw body, content type, status, field)
    (b'{"code": "0000ffff", "k": 0}', "application/json", 422, "k"),
    (b'{"code": "0000ffff", "k": "many"}', "application/json", 422, "k"),
    (b'{"code": "0000ffff", "radius": 2}', "application/json", 422, "radius"),
    (b'{"filter": {"a": [1]}, "code": "0000ffff"}', "application/json", 422, "filter.a"),
    (b"[1, 2]", "application/json", 422, "body"),
    (b'{"code": ', "application/json", 422, "body"),
    (b"", "application/json", 422, "body"),
    (b'{"code": "0000ffff"}', "text/plain", 422, "body"),
    (b'{"text": "caf\xe9"}', "application/json", 422, "body"),
]


@pytest.mark.parametrize(("raw", "content_type", "status", "field"), BAD_BODIES)
def test_bad_search_bodies_are_refused_naming_the_field(
    client: TestClient, raw: bytes, content_type: str, status: int, field: str
) -> None:
    r = client.post(
        "/v1/collections/docs/search", content=raw, headers={"content-type": content_type}
    )
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field
    if raw.startswith(b'{"code": ') and len(raw) == 9:  # cut short: where, and why
        assert r.json()["error"]["message"].startswith("body: invalid JSON at character 9")


def test_a_search_answers_the_same_with_and_without_a_content_type(client: TestClient) -> None:
    raw = b'{"text": "rocket launch", "k": 5}'
    plain = client.post("/v1/collections/docs/search", content=raw)
    typed = client.post(
        "/v1/collections/docs/search", content=raw, headers={"content-type": "application/json"}
    )
    assert plain.status_code == typed.status_code == 200
    assert plain.json()["hits"] == typed.json()["hits"] and len(typed.json()["hits"]) == 5


def test_the_openapi_document_keeps_the_request_and_response_schemas(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    search = doc["paths"]["/v1/collections/{collection}/search"]["post"]
    body = search["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("/SearchRequest")
    answer = search["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer["$ref"].endswith("/SearchResponse")
    upsert = doc["paths"]["/v1/collections/{collection}/items"]["post"]
    assert upsert["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/UpsertRequest"
    )


def test_a_sync_endpoint_on_the_one_pass_path_answers_its_declared_model(
    client: TestClient,
) -> None:
    r = client.post(
        "/v1/collections/docs/items",
        json={"items": [{"id": "j1", "text": "rocket launch"}]},
        headers={"authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert set(r.json()) == {"upserted", "model_version", "seq"}
