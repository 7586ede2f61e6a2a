"""Every search path of HammingIndex against the brute force, on codes shaped like learned ones.

``test_index.py`` covers the API on lightly clustered codes; here each strategy (bit-flip,
multi-index, scan) is forced through ``IndexConfig.groups`` and the radius, on codes that are
signs of random projections of a Gaussian mixture (crowded buckets, many duplicates) and on
dense balls that hold most of the index, with tombstones and a delta buffer in play.
"""

from __future__ import annotations

import numpy as np
import pytest

from service.index import HammingIndex, IndexConfig
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
