"""The ``CodeIndex`` contract on both backends, and the same answers from both on the same data.

Every search is checked against a NumPy popcount brute force: ids, distances and their
(distance, id) order, for radius and k-NN, with and without metadata filters, including balls
and single distance shells of more than the 16,384 hits one Milvus search returns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from service.config import InputLimits
from service.index import CodeWidthError, HammingIndexError
from service.registry import NewItem, Registry
from service.store import CodeIndex, ItemStore
from tests.conftest import FakeBackend, FakeModel, make_texts
from tests.service.backends import index_factory, open_store

POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)


def brute(db: np.ndarray, ids: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every item's distance to ``q``, sorted by (distance, id)."""
    dist = POP[np.bitwise_xor(db, q[None, :])].sum(axis=1)
    order = np.lexsort((ids, dist))
    return ids[order], dist[order]


def crowded(n: int, bits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes where half the items share one code and most of the rest sit close to it: the
    ball around it, and its distance-0 shell alone, hold more than 16,384 items when n is
    large enough."""
    rng = np.random.RandomState(seed)
    codes = rng.randint(0, 256, (n, bits // 8)).astype(np.uint8)
    codes[: n // 2] = 0
    flips = rng.randint(0, bits, (n // 4, 2))
    near = np.zeros((n // 4, bits // 8), np.uint8)
    for j in range(2):
        np.bitwise_or.at(near, (np.arange(n // 4), flips[:, j] // 8), 1 << (flips[:, j] % 8))
    codes[n // 2 : n // 2 + n // 4] = near
    ids = rng.permutation(n * 3)[:n].astype(np.int64) + 7  # sparse, unordered numbers
    return ids, codes


def _equal(
    got: CodeIndex,
    want: tuple[np.ndarray, np.ndarray],
    radius: int | None,
    k: int | None,
    q: np.ndarray,
) -> None:
    result = got.search_radius(q[None], radius)[0] if radius is not None else None
    if k is not None:
        result = got.search_knn(q[None], k)[0]
    assert result is not None
    ids, dist = want
    if radius is not None:
        ids, dist = ids[dist <= radius], dist[dist <= radius]
    if k is not None:
        ids, dist = ids[:k], dist[:k]
    np.testing.assert_array_equal(result.ids, ids)
    np.testing.assert_array_equal(result.distances, dist)


def test_index_contract(backend: str, store: ItemStore) -> None:
    index = index_factory(backend, store)(16)
    ids, codes = crowded(3000, 16, seed=1)
    index.add(ids, codes)
    assert len(index) == 3000
    for q in (codes[0], codes[2000], np.array([0xFF, 0x0F], np.uint8)):
        want = brute(codes, ids, q)
        for radius in (0, 1, 3, 16):
            _equal(index, want, radius, None, q)
        for k in (1, 5, 1499, 1500, 1501, 3000, 5000):
            _equal(index, want, None, k, q)
    index.add(ids[:10], np.full((10, 2), 0xFF, np.uint8))  # add replaces a code
    assert len(index) == 3000
    codes[:10] = 0xFF
    assert index.remove(np.concatenate([ids[10:20], [10**9]])) == 10
    assert len(index) == 2990
    alive = np.ones(3000, bool)
    alive[10:20] = False
    want = brute(codes[alive], ids[alive], codes[0])
    _equal(index, want, 2, None, codes[0])
    _equal(index, want, None, 40, codes[0])
    with pytest.raises(CodeWidthError):
        index.add(ids[:1], np.zeros((1, 3), np.uint8))
    with pytest.raises(HammingIndexError):
        index.search_radius(np.zeros((1, 2), np.uint8), -1)
    with pytest.raises(HammingIndexError):
        index.search_knn(np.zeros((1, 2), np.uint8), 0)
    empty = index_factory(backend, store)(8)
    assert len(empty) == 0 and len(empty.search_knn(np.zeros((1, 1), np.uint8), 3)[0].ids) == 0


def test_balls_past_one_milvus_page_are_complete_and_ordered(tmp_path: Path) -> None:
    """40,000 items: 20,000 share the query's code (one shell past 16,384), and the ball of
    radius 2 holds 30,000; radius and k-NN answers equal the brute force and HammingIndex's."""
    from service.index import HammingIndex
    from service.milvus_index import MilvusIndex

    store = open_store("milvus", tmp_path)
    client = getattr(store, "client")  # noqa: B009 - only MilvusStore has one
    ids, codes = crowded(40_000, 16, seed=2)
    milvus, local = MilvusIndex(client, 16, timeout=120.0), HammingIndex(16)
    milvus.add(ids, codes)
    local.add(ids, codes)
    q = codes[0]
    want = brute(codes, ids, q)
    for radius in (0, 2, 5):
        _equal(milvus, want, radius, None, q)
        a, b = milvus.search_radius(q[None], radius), local.search_radius(q[None], radius)
        np.testing.assert_array_equal(a.ids, b.ids)
    assert milvus.search_radius(q[None], 0).stats.probes > 2  # the shell was split
    for k in (10, 16_384, 20_001, 30_000):
        _equal(milvus, want, None, k, q)
    store.close()


@pytest.fixture(scope="module")
def corpus() -> list[NewItem]:
    texts = make_texts(1200, seed=3)
    return [
        NewItem(f"d{i:05d}", t, {"topic": i % 4, "even": i % 2 == 0}, f"items[{i}]")
        for i, t in enumerate(texts)
    ]


def _registry(backend: str, store: ItemStore, data_dir: Path) -> Registry:
    registry = Registry(
        store, FakeBackend(), data_dir, "cpu", InputLimits(), index_factory(backend, store)
    )
    registry.load()
    registry.create("docs", "text", {"bits": 16})
    registry.install_model("docs", FakeModel("text", 16, ()))
    return registry


def test_both_backends_answer_the_same(tmp_path: Path, corpus: list[NewItem]) -> None:
    """The same items through a Registry on each backend: the same hits (ids, distances,
    order) for radius, k-NN and widening searches, with and without filters, before and after
    deletions and overwrites."""
    registries = [
        _registry(kind, open_store(kind, tmp_path / kind), tmp_path / kind)
        for kind in ("local", "milvus")
    ]
    try:
        for registry in registries:
            for start in range(0, len(corpus), 400):
                registry.upsert("docs", corpus[start : start + 400])
            registry.delete_item("docs", "d00007")
            registry.upsert("docs", [NewItem("d00010", corpus[500].value, {"topic": 9}, "x")])
        queries = [c.value for c in corpus[:6]]
        model = FakeModel("text", 16, ())
        searches = [
            (r, k, where)
            for r, k in ((0, None), (2, None), (16, None), (None, 1), (None, 37), (1, 50))
            for where in (None, {"topic": 1}, {"even": True, "topic": 2}, {"topic": 9})
        ]
        for code in model.encode(queries):
            for radius, k, where in searches:
                answers = []
                for registry in registries:
                    state, serving = registry.serving("docs")
                    ranked = state.search(serving, code[None], radius, k, where)
                    answers.append([(h.id, h.distance) for h in ranked.hits()])
                assert answers[0] == answers[1], (radius, k, where)
                assert answers[0] == sorted(answers[0], key=lambda h: (h[1], h[0]))
        state, serving = registries[1].serving("docs")
        whole = state.search(serving, model.encode(queries[:1]), 16, None, None)
        assert len(whole.hits()) == len(corpus) - 1  # no limit: the whole 16-bit ball
    finally:
        for registry in registries:
            registry.store.close()
