"""Metadata filters: the bitmap index and both ways of ranking a filter's items, against a
brute-force reference, through writes, overwrites and deletions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.code_column import ColumnedIndex
from service.collection import CollectionState, Serving
from service.config import InputLimits
from service.filter_index import FilterConfig, FilterIndex, matches
from service.index import HammingIndex
from service.modalities import modality_of
from tests.conftest import FakeModel

VALUES: list[Any] = [0, 1, 1.0, 2.5, True, False, None, "a", "b", "1", ""]


def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.unpackbits(a ^ b, axis=-1).sum(axis=-1)


def _reference(
    rows: dict[int, tuple[str, dict[str, Any], np.ndarray]],
    q: np.ndarray,
    max_distance: int | None,
    k: int | None,
    where: dict[str, Any],
) -> list[tuple[int, str]]:
    hits = sorted(
        (int(_hamming(code, q[0])), item_id)
        for item_id, meta, code in rows.values()
        if all(matches(meta, key, v) for key, v in where.items())
    )
    if max_distance is not None:
        within = [h for h in hits if h[0] <= max_distance]
        if k is None or len(within) >= k:
            return within[:k]
    return hits[:k]


class _Probes:
    """A HammingIndex that counts its searches."""

    def __init__(self, bits: int) -> None:
        self.index = HammingIndex(bits)
        self.searches = 0

    def __len__(self) -> int:
        return len(self.index)

    def add(self, ids: np.ndarray, codes: np.ndarray) -> None:
        self.index.add(ids, codes)

    def remove(self, ids: np.ndarray) -> int:
        return self.index.remove(ids)

    def search_radius(self, codes: np.ndarray, max_distance: int, **order: bool) -> Any:
        self.searches += 1
        return self.index.search_radius(codes, max_distance, **order)

    def search_knn(self, codes: np.ndarray, k: int, **options: bool) -> Any:
        self.searches += 1
        return self.index.search_knn(codes, k, **options)


def _collection(bits: int, max_values: int) -> tuple[CollectionState, Serving, _Probes]:
    state = CollectionState("c", modality_of("vector", {"dim": 2}, InputLimits()), 0.0)
    state.filters = FilterIndex(FilterConfig(max_values=max_values))
    probes = _Probes(bits)
    serving = Serving(1, FakeModel("vector", bits, (2,)), ColumnedIndex(probes, bits))
    state.serving = serving
    return state, serving, probes


# every key unindexed / only "wide" (40 values) unindexed / every key indexed
@pytest.mark.parametrize("max_values", [3, 20, 1000])
@pytest.mark.parametrize("probe_cost", [0, 30, 10**9])  # probe / the default / scan
def test_filtered_search_matches_brute_force(
    max_values: int, probe_cost: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("service.collection.PROBE_COST", probe_cost)
    bits = 16
    rng = np.random.RandomState(max_values + probe_cost)
    state, serving, _ = _collection(bits, max_values)
    rows: dict[int, tuple[str, dict[str, Any], np.ndarray]] = {}
    next_num = 1

    def meta() -> dict[str, Any]:
        keys = rng.choice(["a", "b", "c", "wide"], size=rng.randint(0, 4), replace=False)
        out = {str(key): VALUES[rng.randint(len(VALUES))] for key in keys}
        if "wide" in out:
            out["wide"] = int(rng.randint(40))
        return out

    for step in range(12):
        # new items, overwrites of old ones (same number, new metadata), deletions
        fresh = [(next_num + i, f"id{rng.randint(10**5):05d}-{next_num + i}") for i in range(40)]
        next_num += 40
        again = [(n, rows[n][0]) for n in rng.permutation(list(rows))[:10].tolist()]
        writes = [(n, item_id, meta()) for n, item_id in fresh + again]
        codes = rng.randint(0, 256, size=(len(writes), bits // 8)).astype(np.uint8)
        nums = np.asarray([n for n, _, _ in writes], np.int64)
        serving.index.add(nums, codes)
        state.remember(writes)
        for (n, item_id, m), code in zip(writes, codes, strict=True):
            rows[n] = (item_id, m, code)
        gone = rng.permutation(list(rows))[:8].tolist()
        serving.index.remove(np.asarray(gone, np.int64))
        state.forget(gone)
        for n in gone:
            del rows[n]
        for _ in range(15):
            picked = meta() or {"a": VALUES[rng.randint(len(VALUES))]}
            keys = list(picked)[: rng.randint(1, len(picked) + 1)]
            where = {key: picked[key] for key in keys}
            q = rng.randint(0, 256, size=(1, bits // 8)).astype(np.uint8)
            max_distance = None if rng.rand() < 0.4 else int(rng.randint(0, 6))
            k = None if max_distance is not None and rng.rand() < 0.3 else int(rng.randint(1, 30))
            got = state.search(serving, q, max_distance, k, where, limit=1000)
            expect = _reference(rows, q, max_distance, k, where)
            assert [(h.distance, h.id) for h in got.hits()] == expect, (step, where, k)
            by_id = {item_id: m for item_id, m, _ in rows.values()}
            assert all(h.metadata == by_id[h.id] for h in got.hits())
    assert state.size == len(rows)


def test_a_selective_filter_never_probes_the_index() -> None:
    bits = 16
    state, serving, probes = _collection(bits, 1000)
    n = 5000
    rng = np.random.RandomState(0)
    nums = np.arange(1, n + 1, dtype=np.int64)
    serving.index.add(nums, rng.randint(0, 256, size=(n, 2)).astype(np.uint8))
    state.remember([(i, f"i{i}", {"rare": i % 500 == 0, "half": i % 2}) for i in nums.tolist()])
    q = np.zeros((1, 2), np.uint8)
    got = state.search(serving, q, None, 5, {"rare": True})
    assert len(got.hits()) == 5 and probes.searches == 0
    state.search(serving, q, None, 5, {"half": 1})  # half the collection: probed
    assert probes.searches > 0


@pytest.mark.parametrize(
    ("value", "same", "different"),
    [(1, [1, 1.0], [True, "1", None]), (True, [True], [1, 1.0, "true"]), (None, [None], [0, ""])],
)
def test_values_are_keyed_by_json_type(value: Any, same: list[Any], different: list[Any]) -> None:
    index = FilterIndex()
    index.add([7], {"k": value})
    for v in same:
        assert list(index.select({"k": v}).members or []) == [7]
    for v in different:
        assert not index.select({"k": v}).members
    assert not index.select({"other": value}).members  # a missing key is not null
