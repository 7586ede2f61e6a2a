"""Every search path of HammingIndex against the brute force, on codes shaped like learned ones.

``test_index.py`` covers the API on lightly clustered codes; here each strategy (bit-flip,
multi-index, scan) is forced through ``IndexConfig.groups`` and the radius, on codes that are
signs of random projections of a Gaussian mixture (crowded buckets, many duplicates) and on
dense balls that hold most of the index, with tombstones and a delta buffer in play.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.index import CodeWidthError, CostModel, HammingIndex, HammingIndexError, IndexConfig
from tests.service.test_index import assert_knn_exact, assert_radius_exact, make_codes

WIDTHS = [8, 16, 24, 32, 40, 64, 72, 96, 128]


def learned_codes(rng: np.random.Generator, n: int, bits: int, spread: float = 3.0) -> np.ndarray:
    """Signs of random projections of a 20-centre Gaussian mixture (centres ``spread`` apart)."""
    centres = spread * rng.standard_normal((20, 16))
    x = centres[rng.integers(0, 20, n)] + rng.standard_normal((n, 16))
    return np.packbits(x @ rng.standard_normal((16, bits)) > 0, axis=1)


def radii(bits: int) -> list[int]:
    return sorted({0, 1, 2, 3, 5, bits // 4, bits // 2, bits})


def churned(bits: int, groups: tuple[int, ...] | None, db: np.ndarray, ids: np.ndarray):
    """An index over ``db`` with tombstones (a removed tenth) and a delta (the last tenth).

    Returns the index and the live (ids, codes).
    """
    n = len(db)
    index = HammingIndex(bits, IndexConfig(groups=groups, min_delta=n // 5))
    index.add(ids[: n - n // 10], db[: n - n // 10])
    index.rebuild()
    index.remove(ids[::10])
    index.add(ids[n - n // 10 :], db[n - n // 10 :])
    live = ~np.isin(ids, ids[::10]) | (np.arange(n) >= n - n // 10)
    return index, ids[live], db[live]


def group_choices(bits: int) -> list[tuple[int, ...] | None]:
    words = (bits + 63) // 64
    fewest = sum(-(-min(64, bits - 64 * w) // 32) for w in range(words))
    choices: list[tuple[int, ...] | None] = [None, (fewest,), (fewest + 1,)]
    if bits <= 32:
        choices.append((2, 1))  # whole-code table last: its hits come in another table's order
    return choices


@pytest.mark.parametrize("bits", WIDTHS)
def test_every_group_and_radius_is_exact_on_learned_codes(bits: int) -> None:
    rng = np.random.default_rng(bits + 1)
    db = learned_codes(rng, 1500, bits)
    ids = rng.choice(1 << 40, 1500, replace=False).astype(np.int64) - (1 << 39)  # sparse ids
    q = np.concatenate([db[rng.integers(0, len(db), 12)], learned_codes(rng, 4, bits)])
    for groups in group_choices(bits):
        index, live_ids, live_db = churned(bits, groups, db, ids)
        sizes = []
        for r in radii(bits):
            res = assert_radius_exact(index, live_db, live_ids, q, r)
            sizes.append(np.diff(res.lims))
        assert all(np.all(a <= b) for a, b in zip(sizes, sizes[1:], strict=False))
        assert np.all(sizes[-1] == len(live_ids))  # the full ball is everything
        assert_knn_exact(index, live_db, live_ids, q, 25)


def test_each_strategy_is_exercised_and_exact() -> None:
    """The same 32-bit data through bit-flip, multi-index and scan give identical answers."""
    rng = np.random.default_rng(7)
    db = learned_codes(rng, 4000, 32)
    ids = np.arange(4000, dtype=np.int64) * 3
    q = db[rng.integers(0, 4000, 40)]
    cases = {  # (groups, radius): the strategy the planner picks for this data
        ((1,), 1): "bitflip",
        ((2,), 3): "multi-index",
        ((1,), 20): "scan",
        ((2, 1), 0): "bitflip",  # the whole-code table is not table 0: hits need resolving
    }
    for (groups, r), strategy in cases.items():
        index, live_ids, live_db = churned(32, groups, db, ids)
        res = assert_radius_exact(index, live_db, live_ids, q, r)
        assert res.stats.strategy == strategy


@pytest.mark.parametrize("bits", [16, 32, 64, 128])
def test_dense_balls_that_hold_most_of_the_index(bits: int) -> None:
    """Few distinct codes: buckets of hundreds, hits by the thousand per query, big outputs."""
    rng = np.random.default_rng(bits)
    db = make_codes(rng, 3000, bits, flips=1)
    db[: 3000 // 2] = db[0]  # one code shared by half the index
    ids = rng.permutation(3000).astype(np.int64)
    q = np.concatenate([db[:3], db[rng.integers(0, 3000, 30)]])
    for groups in group_choices(bits)[:3]:
        index, live_ids, live_db = churned(bits, groups, db, ids)
        for r in (0, 1, 2, 4, bits // 2):
            res = assert_radius_exact(index, live_db, live_ids, q, r)
            assert res.lims[-1] > 4 * len(q)  # more hits than the first output reservation
        assert_knn_exact(index, live_db, live_ids, q, 200)


@pytest.mark.parametrize("threads", [1, 3])
def test_batches_of_many_large_balls_are_exact(threads: int) -> None:
    rng = np.random.default_rng(11)
    db = learned_codes(rng, 5000, 24, spread=1.0)
    ids = rng.permutation(5000).astype(np.int64)
    index = HammingIndex(24)
    index.add(ids, db)
    q = learned_codes(rng, 300, 24, spread=1.0)
    for r in (2, 4, 6):
        ref = index.search_radius(q[:1], r)  # warm and compare batch against single queries
        res = index.search_radius(q, r, threads=threads)
        for i in range(0, len(q), 37):
            one = index.search_radius(q[i : i + 1], r)
            np.testing.assert_array_equal(res[i].ids, one[0].ids)
            np.testing.assert_array_equal(res[i].distances, one[0].distances)
        assert ref.lims[-1] == res.lims[1]
    assert_radius_exact(index, db, ids, q[:50], 4)


# -- one query (the fast path) and k-NN strategies ----------------------------------------


def one_row_variants(code: np.ndarray) -> list[np.ndarray]:
    """One (1, width) query as a fresh row, a read-only buffer and a strided view."""
    readonly = np.frombuffer(code.tobytes(), np.uint8).reshape(1, -1)
    strided = np.repeat(code[None], 2, axis=1)[:, ::2]  # every other byte: not contiguous
    assert not readonly.flags.writeable and (code.size == 1 or not strided[0].flags.c_contiguous)
    return [code[None].copy(), readonly, strided]


@pytest.mark.parametrize("bits", [8, 16, 32, 64, 128])
def test_one_query_matches_brute_force_and_the_batch(bits: int) -> None:
    rng = np.random.default_rng(bits + 11)
    db = learned_codes(rng, 1200, bits)
    ids = rng.choice(1 << 40, 1200, replace=False).astype(np.int64)
    index, live_ids, live_db = churned(bits, None, db, ids)  # tombstones and a delta
    q = np.concatenate([db[rng.integers(0, len(db), 6)], learned_codes(rng, 2, bits)])
    batch = {r: index.search_radius(q, r) for r in (0, 1, 3, bits)}
    knn = {k: index.search_knn(q, k) for k in (1, 11, 60)}
    for i, code in enumerate(q):
        for row in one_row_variants(code):
            for r, res in batch.items():
                one = assert_radius_exact(index, live_db, live_ids, row, r)
                np.testing.assert_array_equal(one.ids, res[i].ids)
                assert one.stats.strategy == res.stats.strategy and one.stats.queries == 1
                assert one.stats.table_radii == res.stats.table_radii
            for k, res in knn.items():
                one = assert_knn_exact(index, live_db, live_ids, row, k)
                np.testing.assert_array_equal(one.ids, res[i].ids)
                assert one.lims.tolist() == [0, min(k, len(live_ids))]


def test_one_query_sees_every_write() -> None:
    """Kept plans and entry points belong to a snapshot: each write's effect is visible."""
    rng = np.random.default_rng(5)
    db = learned_codes(rng, 800, 32)
    ids = np.arange(800, dtype=np.int64)
    index = HammingIndex(32, IndexConfig(min_delta=100))
    code = db[:1]
    for step in range(6):
        index.search_radius(code, 2)
        index.search_knn(code, 5)
        if step % 3 == 0:
            index.add(
                ids[step * 100 : (step + 1) * 100 + 50], db[step * 100 : (step + 1) * 100 + 50]
            )
        elif step % 3 == 1:
            index.remove(ids[: step * 20 : 3])
        else:
            index.rebuild()
        live_ids, live_db = index.codes()
        assert_radius_exact(index, live_db, live_ids, code, 2)
        assert_knn_exact(index, live_db, live_ids, code, 5)


def test_one_query_is_checked_like_a_batch() -> None:
    index = HammingIndex(32)
    index.add([1, 2], np.array([[0, 0, 0, 1], [0, 0, 0, 3]], np.uint8))
    with pytest.raises(CodeWidthError, match="reshape"):
        index.search_radius(np.zeros(4, np.uint8), 1)
    with pytest.raises(CodeWidthError, match="dtype"):
        index.search_knn(np.zeros((1, 4), np.int64), 1)
    with pytest.raises(CodeWidthError, match="shape"):
        index.search_knn(np.zeros((1, 8), np.uint8), 1)
    for bad in (True, -1, 1.0):
        with pytest.raises(HammingIndexError):
            index.search_radius(np.zeros((1, 4), np.uint8), bad)  # type: ignore[arg-type]
    with pytest.raises(HammingIndexError):
        index.search_knn(np.zeros((1, 4), np.uint8), 0)
    with pytest.raises(HammingIndexError, match="threads must be >= 1"):
        index.search_radius(np.zeros((1, 4), np.uint8), 1, threads=0)
    with pytest.raises(HammingIndexError, match="threads must be >= 1"):
        index.search_knn(np.zeros((1, 4), np.uint8), 1, threads=0)
    hits = index.search_knn(np.zeros((1, 4), np.uint8), np.int64(5))[0]
    assert hits.ids.tolist() == [1, 2] and hits.distances.tolist() == [1, 2]
    assert HammingIndex(32).search_knn(np.zeros((1, 4), np.uint8), 3).lims.tolist() == [0, 0]


SHELLS_ONLY = CostModel(scan=1e9)  # a scan never pays: k-NN grows table shells to the end
SCAN_ONLY = CostModel(probe_direct=1e9, probe_search=1e9)  # the first shell already costs more


# shells only stops at 32 bits: growing 32-bit tables to their last shell is 2**32 probes a query
STRATEGIES = [
    pytest.param(bits, cost, id=f"{name}-{bits}")
    for name, cost in (("planned", None), ("shells", SHELLS_ONLY), ("scan", SCAN_ONLY))
    for bits in (16, 32, 64)
    if not (cost is SHELLS_ONLY and bits > 32)
]


@pytest.mark.parametrize(("bits", "cost"), STRATEGIES)
def test_knn_with_far_kth_neighbours_every_strategy(bits: int, cost: CostModel | None) -> None:
    """Duplicated clusters (each query has ~5 items at 0, its k-th far away), tombstones, delta.

    Like the service's 20 Newsgroups collection repeated under new ids.
    """
    rng = np.random.default_rng(bits + 3)
    base = learned_codes(rng, 300, bits, spread=6.0)
    db = np.tile(base, (5, 1))
    ids = rng.permutation(1 << 20)[: len(db)].astype(np.int64)
    config = IndexConfig(min_delta=len(db) // 5, cost=cost or CostModel())
    index = HammingIndex(bits, config)
    n = len(db)
    index.add(ids[: n - n // 10], db[: n - n // 10])
    index.rebuild()
    index.remove(ids[::7])
    index.add(ids[n - n // 10 :], db[n - n // 10 :])
    live_ids, live_db = index.codes()
    far = np.packbits(rng.integers(0, 2, (3, bits), dtype=np.uint8), axis=1)  # far from all
    q = np.concatenate([base[rng.integers(0, len(base), 5)], far])
    for k in (1, 4, 11, 40, len(live_ids) + 3):
        res = assert_knn_exact(index, live_db, live_ids, q, k)
        if cost is SCAN_ONLY:
            assert res.stats.scanned_queries == len(q)
        if cost is SHELLS_ONLY:
            assert res.stats.scanned_queries == 0
        for i in range(len(q)):  # and one query at a time
            one = assert_knn_exact(index, live_db, live_ids, q[i : i + 1], k)
            np.testing.assert_array_equal(one.ids, res[i].ids)


# -- the two-table verify of one-word codes (a 64-bit index's usual dense ball) ---------------

PAIR_ONLY = CostModel(copy=1e9, scan=1e4)  # neither bit-flip nor a scan: a two-table group


@pytest.mark.parametrize("bits", [16, 24, 32, 48, 64])
@pytest.mark.parametrize("groups", [(2,), (1, 2), (2, 1)])
def test_two_table_verify_is_exact_with_tombstones_delta_and_edge_radii(
    bits: int, groups: tuple[int, ...]
) -> None:
    """The pair of tables is group 0 (rows of table 0 are final) or group 1 (all rows mapped)."""
    if bits > 32 and 1 in groups:
        pytest.skip("a whole-code table needs a code of at most 32 bits")
    rng = np.random.default_rng(bits * 7 + len(groups))
    config = IndexConfig(groups=groups, min_delta=300, cost=PAIR_ONLY)
    q = learned_codes(rng, 6, bits)
    empty = HammingIndex(bits, config)
    assert empty.search_radius(q, 2).lims.tolist() == [0] * 7  # an empty index
    db = learned_codes(rng, 2400, bits)
    db[:300] = db[0]  # one crowded bucket in every table
    ids = rng.choice(1 << 40, len(db), replace=False).astype(np.int64) - (1 << 39)
    index = HammingIndex(bits, config)
    index.add(ids[:2000], db[:2000])
    index.rebuild()
    index.remove(ids[:2000:9])  # tombstones, some in the crowded bucket
    index.add(ids[2000:], db[2000:])  # a delta
    live_ids, live_db = index.codes()
    q = np.concatenate([db[:2], db[rng.integers(0, len(db), 10)], q])
    # Whole-code balls of 16-bit pieces (32 bits) are 2**16 probes: fine; of 24-bit or 32-bit
    # pieces they are not, and the planner scans those instead.
    edge = [bits, bits + 5] if bits <= 32 else []
    for r in [0, 1, 2, 3, 5, *edge]:
        res = assert_radius_exact(index, live_db, live_ids, q, r)
        assert res.stats.strategy == "multi-index" and res.stats.tables == 2
        for i in (0, 5, len(q) - 1):  # the one-query path
            one = assert_radius_exact(index, live_db, live_ids, q[i : i + 1], r)
            np.testing.assert_array_equal(one.ids, res[i].ids)
    planned = HammingIndex(bits, IndexConfig(groups=groups, min_delta=300))
    planned.add(live_ids, live_db)
    assert_radius_exact(planned, live_db, live_ids, q, bits + 5)  # radius past the width
    assert_knn_exact(planned, live_db, live_ids, q[:4], len(live_ids) + 10)  # k past the size
