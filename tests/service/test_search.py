"""Search: every query kind, exact ranking against brute force, widening, filters, errors."""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter

from service.code_column import ColumnedIndex
from service.collection import CollectionState, Serving
from service.config import InputLimits
from service.index import HammingIndex
from service.item_table import ItemTable
from service.modalities import modality_of
from service.ranking import IndexProbe, rank
from service.schemas import Hit, SearchResponse
from tests.conftest import FakeModel, make_images, make_texts, png_b64


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.unpackbits(a ^ b, axis=-1).sum(axis=-1)


def _brute(
    codes: np.ndarray,
    ids: list[str],
    meta: list[dict[str, Any]],
    q: np.ndarray,
    max_distance: int | None,
    k: int | None,
    where: dict[str, Any] | None,
) -> list[tuple[int, str]]:
    d = _hamming(codes, q)
    rows = sorted(
        (int(d[i]), ids[i])
        for i in range(len(ids))
        if where is None or all(meta[i].get(key) == v for key, v in where.items())
    )
    if max_distance is not None:
        within = [r for r in rows if r[0] <= max_distance]
        if k is None or len(within) >= k:
            return within[:k] if k else within
    assert k is not None
    return rows[:k]


def _state(
    bits: int, nums: np.ndarray, codes: np.ndarray, ids: list[str], meta: list[dict[str, Any]]
) -> tuple[CollectionState, Serving]:
    """A collection in memory holding the items, with a real index."""
    state = CollectionState("c", modality_of("vector", {"dim": 2}, InputLimits()), 0.0)
    index = ColumnedIndex(HammingIndex(bits), bits)
    index.add(nums, codes)
    state.remember(list(zip(nums.tolist(), ids, meta, strict=True)))
    serving = Serving(1, FakeModel("vector", bits, (2,)), index)
    state.serving = serving
    return state, serving


@pytest.mark.parametrize("probe_cost", [0, 10**9])  # filters: probe the index / scan members
@pytest.mark.parametrize("bits", [8, 16])
def test_rank_matches_brute_force(
    bits: int, probe_cost: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many ties (short codes), random radius / k / filters, string ids unlike numeric ones."""
    monkeypatch.setattr("service.collection.PROBE_COST", probe_cost)
    rng = np.random.RandomState(bits)
    n = 400
    codes = rng.randint(0, 256, size=(n, bits // 8)).astype(np.uint8)
    nums = rng.permutation(10 * n)[:n].astype(np.int64)
    ids = [f"id{rng.randint(10**6):06d}-{i}" for i in range(n)]
    meta = [{"g": int(rng.randint(3)), "odd": bool(i % 2)} for i in range(n)]
    state, serving = _state(bits, nums, codes, ids, meta)
    for trial in range(60):
        q = rng.randint(0, 256, size=(1, bits // 8)).astype(np.uint8)
        max_distance = None if trial % 3 == 0 else int(rng.randint(0, bits // 2))
        k = None if (trial % 3 == 1) else int(rng.randint(1, 60))
        where = None if trial % 2 else {"g": int(rng.randint(3))}
        if trial % 7 == 0:
            where = {"g": 99}  # nothing matches: exhausts the collection
        got = state.search(serving, q, max_distance, k, where)
        expect = _brute(codes, ids, meta, q, max_distance, k, where)
        assert [(h.distance, h.id) for h in got.hits()] == expect, (trial, max_distance, k, where)
        assert all(h.metadata == meta[ids.index(h.id)] for h in got.hits())
        if max_distance is not None:
            beyond = any(h.distance > max_distance for h in got.hits())
            assert got.widened or not beyond  # going past the radius is always reported


def test_search_by_every_query_kind(client: TestClient) -> None:
    texts = make_texts(40)
    model = FakeModel("text", 32, ())
    codes = model.encode(texts)
    ids = [f"t{i:03d}" for i in range(40)]
    for body in (
        {"text": texts[7]},
        {"id": "t007"},
        {"code": codes[7].tobytes().hex()},
        {"code": "0x" + codes[7].tobytes().hex().upper()},
    ):
        r = client.post("/v1/collections/docs/search", json={**body, "k": 12})
        assert r.status_code == 200, (body, r.text)
        out = r.json()
        assert out["model_version"] == 1 and out["bits"] == 32
        assert out["code"] == codes[7].tobytes().hex()
        got = [(h["distance"], h["id"]) for h in out["hits"]]
        assert got == _brute(codes, ids, [{}] * 40, codes[7:8], None, 12, None)
        assert got[0][0] == 0 and out["took_ms"] >= 0
        assert out["hits"][0]["metadata"].keys() == {"topic", "even"}
    img = make_images(20)[3]
    r = client.post("/v1/collections/digits/search", json={"image": png_b64(img), "k": 1})
    assert r.json()["hits"][0] == {"id": "img3", "distance": 0, "metadata": {"label": 3}}
    vec = np.random.RandomState(1).standard_normal((30, 8))[4].tolist()
    r = client.post("/v1/collections/vecs/search", json={"vector": vec, "max_distance": 0})
    assert "v4" in [h["id"] for h in r.json()["hits"]]


def test_radius_widening_and_filter(client: TestClient) -> None:
    texts = make_texts(40)
    model = FakeModel("text", 32, ())
    codes = model.encode(texts)
    ids = [f"t{i:03d}" for i in range(40)]
    meta = [{"topic": i % 4, "even": i % 2 == 0} for i in range(40)]
    q = codes[5:6]
    r = client.post("/v1/collections/docs/search", json={"id": "t005", "max_distance": 6})
    got = [(h["distance"], h["id"]) for h in r.json()["hits"]]
    assert got == _brute(codes, ids, meta, q, 6, None, None)
    assert all(d <= 6 for d, _ in got) and r.json()["widened"] is False
    r = client.post(
        "/v1/collections/docs/search", json={"id": "t005", "max_distance": 0, "k": 15}
    ).json()
    assert len(r["hits"]) == 15 and r["widened"] is True and r["searched_distance"] > 0
    assert [(h["distance"], h["id"]) for h in r["hits"]] == _brute(codes, ids, meta, q, 0, 15, None)
    r = client.post(
        "/v1/collections/docs/search",
        json={"id": "t005", "k": 100, "filter": {"even": True, "topic": 2}},
    ).json()
    assert {h["id"] for h in r["hits"]} == {ids[i] for i in range(40) if i % 4 == 2}
    assert r["hits"] == sorted(r["hits"], key=lambda h: (h["distance"], h["id"]))
    r = client.post("/v1/collections/docs/search", json={"id": "t005"}).json()
    assert len(r["hits"]) == 10  # default k


FILTERS: list[tuple[dict[str, Any], set[str]]] = [
    ({"even": 1}, set()),  # JSON true is not 1 ...
    ({"topic": True}, set()),  # ... nor 1 true
    ({"topic": 1.0}, {f"t{i:03d}" for i in range(1, 40, 4)}),  # but 1.0 is 1
    ({"flag": None}, {"null-flag"}),  # null matches null, not a missing key
]


@pytest.mark.parametrize(("where", "expect"), FILTERS)
def test_filters_match_json_values_exactly(
    client: TestClient, where: dict[str, Any], expect: set[str]
) -> None:
    item = {"id": "null-flag", "text": "space orbit", "metadata": {"flag": None}}
    assert client.post("/v1/collections/docs/items", json={"items": [item]}).status_code == 200
    r = client.post("/v1/collections/docs/search", json={"id": "t005", "k": 100, "filter": where})
    assert r.status_code == 200, r.text
    assert {h["id"] for h in r.json()["hits"]} == expect


BAD_SEARCHES: list[tuple[dict[str, Any], int, str]] = [
    ({"text": "x", "k": 0}, 422, "k"),
    ({"text": "x", "k": 100_000}, 422, "k"),
    ({"text": "x", "max_distance": -1}, 422, "max_distance"),
    ({"text": "x", "max_distance": 33}, 422, "max_distance"),
    ({"code": "abcd"}, 422, "code"),
    ({"code": "zzzzzzzz"}, 422, "code"),
    ({"k": 3}, 422, "query"),
    ({"text": "x", "id": "t001"}, 422, "query"),
    ({"text": ""}, 422, "text"),
    ({"text": "?! ..."}, 422, "text"),  # no word the model knows
    ({"vector": [1.0, 2.0]}, 422, "vector"),
    ({"image": png_b64(make_images(1)[0])}, 422, "image"),
    ({"id": "missing"}, 404, "id"),
    ({"text": "x", "filter": {"a": [1]}}, 422, "filter.a"),
    ({"text": "x", "k": "many"}, 422, "k"),
]


@pytest.mark.parametrize(("body", "status", "field"), BAD_SEARCHES)
def test_bad_searches_name_the_field(
    client: TestClient, body: dict[str, Any], status: int, field: str
) -> None:
    r = client.post("/v1/collections/docs/search", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field


def test_searches_run_while_items_are_written(client: TestClient) -> None:
    """Writers and readers at once: no errors, and each search sees a consistent state."""
    errors: list[str] = []

    def write() -> None:
        for i in range(20):
            items = [{"id": f"w{i}-{j}", "text": "space orbit"} for j in range(5)]
            r = client.post("/v1/collections/docs/items", json={"items": items})
            if r.status_code != 200:
                errors.append(r.text)

    writer = threading.Thread(target=write)
    writer.start()
    for _ in range(30):
        r = client.post("/v1/collections/docs/search", json={"text": "space orbit", "k": 5})
        if r.status_code != 200 or len(r.json()["hits"]) != 5:
            errors.append(r.text)
    writer.join()
    assert not errors
    assert client.get("/v1/collections/docs").json()["items"] == 140


def test_radius_only_results_are_capped_at_max_k(data_dir: Any) -> None:
    from service.main import create_app
    from tests.conftest import FakeBackend, make_settings

    with TestClient(create_app(make_settings(data_dir, max_k=5), backend=FakeBackend())) as c:
        r = c.post("/v1/collections/docs/search", json={"id": "t001", "max_distance": 32}).json()
        assert len(r["hits"]) == 5 and r["truncated"] is True
        assert r["hits"] == sorted(r["hits"], key=lambda h: (h["distance"], h["id"]))
        r = c.post("/v1/collections/docs/search", json={"id": "t001", "k": 5}).json()
        assert r["truncated"] is False


@pytest.mark.parametrize("limit", [1, 7, 50, 1000])
def test_radius_only_rank_cut_to_a_limit_is_the_exact_prefix(limit: int) -> None:
    rng = np.random.RandomState(limit)
    n, bits = 300, 8  # 8 bits: many ties, so the cut falls inside a distance shell
    codes = rng.randint(0, 256, size=(n, 1)).astype(np.uint8)
    nums = np.arange(n, dtype=np.int64)
    ids = [f"x{rng.randint(10**6):06d}-{i}" for i in range(n)]
    state, serving = _state(bits, nums, codes, ids, [{}] * n)
    for radius in (0, 3, 8):
        q = rng.randint(0, 256, size=(1, 1)).astype(np.uint8)
        got = state.search(serving, q, radius, None, None, limit)
        expect = _brute(codes, ids, [{}] * n, q, radius, None, None)
        assert [(h.distance, h.id) for h in got.hits()] == expect[:limit]
        assert got.matched == len(expect)


class _DeletingIndex:
    """A HammingIndex that loses an item right after every count, as if a client deleted one
    each time: a widening search must still stop once it has seen every remaining item."""

    def __init__(self, index: HammingIndex) -> None:
        self.index = index
        self.knn_calls = 0

    def __len__(self) -> int:
        n = len(self.index)
        ids, _ = self.index.codes()
        if len(ids):
            self.index.remove(ids[:1])
        return n

    def search_radius(self, code: np.ndarray, max_distance: int, **order: bool) -> Any:
        return self.index.search_radius(code, max_distance, **order)

    def search_knn(self, code: np.ndarray, k: int, **options: bool) -> Any:
        self.knn_calls += 1
        assert self.knn_calls < 100, "the search does not terminate"
        return self.index.search_knn(code, k, **options)


@pytest.mark.parametrize("max_distance", [None, 2])
def test_a_widening_search_ends_when_items_are_deleted_meanwhile(max_distance: int | None) -> None:
    rng = np.random.RandomState(0)
    n = 200
    index = HammingIndex(16)
    index.add(np.arange(n, dtype=np.int64), rng.randint(0, 256, size=(n, 2)).astype(np.uint8))
    deleting = _DeletingIndex(index)
    q = rng.randint(0, 256, size=(1, 2)).astype(np.uint8)
    items = ItemTable()
    items.put(range(n), [str(i) for i in range(n)], [b"{}"] * n)
    probe = IndexProbe(deleting, q)  # type: ignore[arg-type]

    def none(nums: np.ndarray) -> np.ndarray:  # the filter: no match
        return np.zeros(len(nums), bool)

    got = rank(probe, items, max_distance, 5, none)
    assert got.hits() == [] and deleting.knn_calls < 100


def test_hits_written_from_the_records_read_as_pydantic_writes_them() -> None:
    """The search answer's hits come straight from the item table's bytes: every id and
    metadata value must read back as the ``Hit`` models pydantic would have serialised."""
    ids = [
        "plain-id",
        'quo"te',
        "back\\slash",
        "tab\there",
        "nul\x00\x1f\x7f",
        "ünï",
        "日本語",
        "🙂 e",
    ]
    meta: list[dict[str, Any]] = [
        {},
        {"a": 'ü\n"x"', "n": -3, "f": 0.1, "b": True},
        {"big": 1e16, "small": -2.5e-8, "z": 0},
        {"k": "v"},
        {"s": "\u2028"},
        {},
        {"日": "本"},
        {"e": ""},
    ]
    n = len(ids)
    codes = (np.arange(n, dtype=np.uint8) * 37).reshape(n, 1)
    state, serving = _state(8, np.arange(n, dtype=np.int64), codes, ids, meta)
    got = state.search(serving, codes[:1], None, n, None)
    assert len(got.hits()) == n
    written = got.hits_json()
    assert json.loads(written) == [h.model_dump(exclude_none=True) for h in got.hits()]
    pydantic = TypeAdapter(list[Hit]).dump_json(got.hits(), exclude_none=True)
    assert written.count(b"{") == pydantic.count(b"{")
    for hit in got.hits():  # byte for byte, but 1e16: Python writes "1e+16", pydantic "1e16"
        if "big" not in hit.metadata:
            one = TypeAdapter(Hit).dump_json(hit, exclude_none=True)
            assert one in written, one


def test_search_answers_with_hits_spliced_into_the_model(client: TestClient) -> None:
    """The route writes its hits itself: the body must still be a valid SearchResponse whose
    hits equal those asked for with ``include`` (which builds the models)."""
    texts = make_texts(30)
    items = [
        {"id": f'q"{i}ü', "text": t, "metadata": {"i": i, "s": "é\n"}} for i, t in enumerate(texts)
    ]
    assert client.post("/v1/collections/docs/items", json={"items": items}).status_code == 200
    plain = client.post("/v1/collections/docs/search", json={"text": texts[0], "k": 7})
    assert plain.status_code == 200
    answer = SearchResponse.model_validate_json(plain.content)
    assert len(answer.hits) == 7 and answer.hits[0].id.startswith('q"')
    assert answer.hits[0].metadata.get("s", "é\n") == "é\n"
    detailed = client.post(
        "/v1/collections/docs/search", json={"text": texts[0], "k": 7, "include": ["code"]}
    ).json()
    assert [(h["id"], h["distance"], h["metadata"]) for h in detailed["hits"]] == [
        (h.id, h.distance, h.metadata) for h in answer.hits
    ]
