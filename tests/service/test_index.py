"""HammingIndex against a NumPy popcount brute force: exactness, order, updates, persistence."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.index import (
    CodeWidthError,
    HammingIndex,
    HammingIndexError,
    IndexConfig,
    IndexFormatError,
)

WIDTHS = list(range(8, 129, 8))
# Small delta limits so a few hundred items already exercise tombstones and rebuilds.
CHURN = IndexConfig(min_delta=16, delta_fraction=0.25, dead_fraction=0.25)


def make_codes(rng: np.random.Generator, n: int, bits: int, flips: int = 2) -> np.ndarray:
    """Clustered codes: a few random centres plus up to ``flips`` flipped bits each."""
    if n == 0:
        return np.zeros((0, bits // 8), np.uint8)
    centres = rng.integers(0, 2, (max(1, n // 16), bits), dtype=np.uint8)
    unpacked = centres[rng.integers(0, len(centres), n)]
    for _ in range(flips):
        unpacked[np.arange(n), rng.integers(0, bits, n)] ^= rng.integers(0, 2, n).astype(np.uint8)
    return np.packbits(unpacked, axis=1)


def brute_radius(
    db: np.ndarray, ids: np.ndarray, queries: np.ndarray, r: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    dist = np.bitwise_count(queries[:, None, :] ^ db[None, :, :]).sum(-1, dtype=np.int64)
    out = []
    for row in dist:
        sel = np.nonzero(row <= r)[0]
        order = np.lexsort((ids[sel], row[sel]))
        out.append((ids[sel][order], row[sel][order]))
    return out


def brute_knn(db: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> list[np.ndarray]:
    dist = np.bitwise_count(queries[:, None, :] ^ db[None, :, :]).sum(-1, dtype=np.int64)
    return [np.lexsort((ids, row))[:k] for row in dist]


def assert_radius_exact(
    index: HammingIndex, db: np.ndarray, ids: np.ndarray, q: np.ndarray, r: int
):
    res = index.search_radius(q, r)
    assert len(res) == len(q)
    for hits, (ref_ids, ref_d) in zip(res, brute_radius(db, ids, q, r), strict=True):
        assert hits.ids.dtype == np.int64 and hits.distances.dtype == np.int32
        assert len(set(hits.ids.tolist())) == len(hits.ids)  # no duplicates
        np.testing.assert_array_equal(hits.ids, ref_ids)  # the exact set, in (distance, id) order
        np.testing.assert_array_equal(hits.distances, ref_d)
    assert_same_hits(res, index.search_radius(q, r, ordered=False))
    return res


def assert_same_hits(ordered, as_found) -> None:
    """``as_found`` holds each query's hits of ``ordered`` (sorted by (distance, id))."""
    np.testing.assert_array_equal(as_found.lims, ordered.lims)
    query = np.repeat(np.arange(len(ordered)), np.diff(ordered.lims))
    order = np.lexsort((as_found.ids, as_found.distances, query))
    np.testing.assert_array_equal(as_found.ids[order], ordered.ids)
    np.testing.assert_array_equal(as_found.distances[order], ordered.distances)


def assert_knn_exact(index: HammingIndex, db: np.ndarray, ids: np.ndarray, q: np.ndarray, k: int):
    res = index.search_knn(q, k)
    dist = np.bitwise_count(q[:, None, :] ^ db[None, :, :]).sum(-1)
    for i, (hits, ref) in enumerate(zip(res, brute_knn(db, ids, q, k), strict=True)):
        assert len(hits.ids) == min(k, len(ids))
        np.testing.assert_array_equal(hits.distances, dist[i][ref])  # distance multiset, sorted
        np.testing.assert_array_equal(hits.ids, ids[ref])  # ties broken by id
    # without the whole shell, the cut one still keeps its smallest ids
    np.testing.assert_array_equal(index.search_knn(q, k, ordered=False).ids, res.ids)
    tied = index.search_knn(q, k, with_ties=True)  # and the k-th's whole shell
    for i, hits in enumerate(tied):
        kth = int(res[i].distances[-1]) if len(res[i].ids) else -1
        ref_ids, ref_d = brute_radius(db, ids, q[i : i + 1], kth)[0]
        np.testing.assert_array_equal(hits.ids, ref_ids)
        np.testing.assert_array_equal(hits.distances, ref_d)
    assert_same_hits(tied, index.search_knn(q, k, with_ties=True, ordered=False))
    return res


@pytest.mark.parametrize("bits", WIDTHS)
def test_radius_and_knn_match_brute_force_at_every_width(bits: int) -> None:
    rng = np.random.default_rng(bits)
    db = make_codes(rng, 600, bits)
    ids = rng.permutation(10_000)[:600].astype(np.int64)
    q = np.concatenate([db[rng.integers(0, 600, 12)], make_codes(rng, 4, bits)])
    index = HammingIndex(bits)
    index.add(ids, db)
    sizes = []
    for r in range(5):
        res = assert_radius_exact(index, db, ids, q, r)
        sizes.append(np.diff(res.lims))
        assert res.stats.candidates >= len(res.ids)
    assert all(np.all(a <= b) for a, b in zip(sizes, sizes[1:], strict=False))  # monotone in r
    for k in (1, 7, 50):
        assert_knn_exact(index, db, ids, q, k)
    assert_radius_exact(index, db, ids, q[:3], bits)  # a full ball is everything


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bits=st.sampled_from([8, 16, 24, 32, 56, 64, 72, 128]),
    n=st.integers(0, 200),
    seed=st.integers(0, 2**32 - 1),
    r=st.integers(0, 4),
    k=st.integers(1, 30),
)
def test_property_exact_against_reference(bits: int, n: int, seed: int, r: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    db = make_codes(rng, n, bits, flips=int(rng.integers(0, 4)))
    ids = rng.choice(2**40, n, replace=False).astype(np.int64) - 2**39  # negative ids too
    q = np.concatenate([db[:3], make_codes(rng, 3, bits)]) if n else make_codes(rng, 3, bits)
    index = HammingIndex(bits)
    index.add(ids, db)
    assert len(index) == n
    assert_radius_exact(index, db, ids, q, r)
    if n:
        assert_knn_exact(index, db, ids, q, k)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bits=st.sampled_from([16, 32, 64, 128]),
    seed=st.integers(0, 2**32 - 1),
    ops=st.lists(
        st.tuples(st.sampled_from(["add", "remove", "rebuild"]), st.integers(1, 60)),
        min_size=1,
        max_size=12,
    ),
)
def test_add_remove_readd_sequences_match_a_dict_model(bits: int, seed: int, ops: list) -> None:
    rng = np.random.default_rng(seed)
    index = HammingIndex(bits, CHURN)
    model: dict[int, np.ndarray] = {}
    for op, size in ops:
        if op == "add":  # ids from a small pool, so re-adds replace codes
            ids = rng.integers(0, 80, size)
            codes = make_codes(rng, size, bits)
            index.add(ids, codes)
            for i, c in zip(ids.tolist(), codes, strict=True):
                model[i] = c  # last one in the batch wins
        elif op == "remove":
            ids = rng.integers(0, 80, size)
            expected = len(set(ids.tolist()) & set(model))
            assert index.remove(ids) == expected
            for i in ids.tolist():
                model.pop(i, None)
        else:
            index.rebuild()
        assert len(index) == len(model)
    keys = np.array(sorted(model), np.int64)
    db = (
        np.stack([model[i] for i in keys.tolist()]) if model else np.zeros((0, bits // 8), np.uint8)
    )
    q = make_codes(rng, 6, bits)
    if len(db):
        q[:3] = db[rng.integers(0, len(db), 3)]
    for r in (0, 2, 4):
        assert_radius_exact(index, db, keys, q, r)
    if len(db):
        assert_knn_exact(index, db, keys, q, 5)
    got_ids, got_codes = index.codes()
    order = np.argsort(got_ids)
    np.testing.assert_array_equal(got_ids[order], keys)
    np.testing.assert_array_equal(got_codes[order], db)


@pytest.mark.parametrize("span", [1, 200, 70_000, 2**40, 2**64 - 1])
def test_radix_sort_of_large_result_groups_matches_numpy(span: int) -> None:
    from service.index._kernels import _radix_sort

    rng = np.random.default_rng(span % 1000)
    for n in (65, 300, 3000):
        lo = -(2**63) if span == 2**64 - 1 else -7
        a = rng.integers(0, span, n, dtype=np.uint64, endpoint=True) + np.uint64(lo + 2**63)
        a = (a - np.uint64(2**63)).astype(np.int64)  # shift into int64 without overflow
        expected = np.sort(a)
        _radix_sort(a)
        np.testing.assert_array_equal(a, expected)


def test_radius_beyond_the_width_returns_everything() -> None:
    rng = np.random.default_rng(5)
    db = make_codes(rng, 100, 16)
    index = HammingIndex(16)
    index.add(np.arange(100), db)
    assert_radius_exact(index, db, np.arange(100), db[:2], 40)
    assert np.all(np.diff(index.search_radius(db[:2], 40).lims) == 100)


def test_readding_an_id_replaces_its_code() -> None:
    index = HammingIndex(16)
    a, b = np.array([[0, 0]], np.uint8), np.array([[255, 255]], np.uint8)
    index.add([7], a)
    index.add([7], b)
    assert len(index) == 1
    assert index.search_radius(a, 0)[0].ids.size == 0
    assert index.search_radius(b, 0)[0].ids.tolist() == [7]
    index.add([8, 8], np.concatenate([a, b]))  # duplicate in one batch: the last wins
    assert index.search_radius(b, 0)[0].ids.tolist() == [7, 8]


def test_strategy_is_chosen_and_reported() -> None:
    rng = np.random.default_rng(0)
    small = HammingIndex(16)
    small.add(np.arange(2000), make_codes(rng, 2000, 16))
    q = make_codes(rng, 5, 16)
    assert small.search_radius(q, 0).stats.strategy == "scan"  # all still in the delta buffer
    small.rebuild()
    assert small.search_radius(q, 0).stats.strategy == "bitflip"
    assert small.search_radius(q, 12).stats.strategy == "scan"  # a 12-bit ball of 16 is huge
    wide = HammingIndex(64)
    wide.add(np.arange(20_000), make_codes(rng, 20_000, 64))  # big enough to beat a scan
    wide.rebuild()
    stats = wide.search_radius(make_codes(rng, 5, 64), 3).stats
    assert stats.strategy == "multi-index" and stats.tables == 2
    assert stats.table_radii == (1, 1) and stats.probes == 5 * 66 and stats.queries == 5
    knn = wide.search_knn(make_codes(rng, 5, 64), 3).stats
    assert knn.strategy == "multi-index" and knn.queries == 5


def test_two_threads_give_the_same_answer_as_one() -> None:
    rng = np.random.default_rng(1)
    index = HammingIndex(64)
    index.add(np.arange(3000), make_codes(rng, 3000, 64))
    q = make_codes(rng, 64, 64)
    for a, b in ((index.search_radius(q, 3), index.search_radius(q, 3, threads=2)),
                 (index.search_knn(q, 10), index.search_knn(q, 10, threads=2))):  # fmt: skip
        np.testing.assert_array_equal(a.lims, b.lims)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.distances, b.distances)
        assert a.stats.candidates == b.stats.candidates


def test_searches_see_whole_writes_while_a_writer_runs() -> None:
    """Readers never see half of an add or remove: the hot code is always in groups of 10."""
    rng = np.random.default_rng(2)
    index = HammingIndex(32, CHURN)
    index.add(np.arange(10_000, 10_500), make_codes(rng, 500, 32))
    hot = np.array([[1, 2, 3, 4]], np.uint8)
    index.remove(index.search_radius(hot, 0)[0].ids)
    errors: list[str] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            hits = index.search_radius(hot, 0)[0]
            if hits.ids.size % 10 or np.any(np.diff(hits.ids) <= 0):
                errors.append(f"saw {hits.ids.size} hot items: {hits.ids.tolist()}")
            knn = index.search_knn(hot, 10)[0]
            if np.any(np.diff(knn.distances) < 0):
                errors.append("unsorted k-NN")

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for step in range(40):
            batch = np.arange(step * 10, step * 10 + 10)
            index.add(batch, np.repeat(hot, 10, axis=0))
            if step % 3 == 2:
                index.remove(batch - 10)
    finally:
        done.set()
        for t in readers:
            t.join()
    assert not errors, errors[:3]
    final = index.search_radius(hot, 0)[0].ids
    assert final.size % 10 == 0 and len(index) == 500 + final.size


def test_save_load_round_trip_keeps_results_delta_and_tombstones(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    index = HammingIndex(64, CHURN)
    db = make_codes(rng, 300, 64)
    index.add(np.arange(300), db)
    index.add(np.arange(300, 310), make_codes(rng, 10, 64))  # stays in the delta
    index.remove([1, 2, 3])  # tombstones
    path = tmp_path / "sub" / "index.bin"
    index.save(path)
    loaded = HammingIndex.load(path, bits=64)
    assert len(loaded) == len(index) == 307
    assert loaded.config == index.config and loaded.groups == index.groups
    q = np.concatenate([db[:20], make_codes(rng, 5, 64)])
    for r in (0, 3, 6):
        a, b = index.search_radius(q, r), loaded.search_radius(q, r)
        np.testing.assert_array_equal(a.lims, b.lims)
        np.testing.assert_array_equal(a.ids, b.ids)
    loaded.add([1], db[1:2])  # still writable after loading
    assert loaded.search_radius(db[1:2], 0)[0].ids.tolist() == [1]
    assert [p.name for p in path.parent.iterdir()] == ["index.bin"]  # no temp file left


def test_failed_save_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = HammingIndex(16)
    index.add([1], np.array([[1, 2]], np.uint8))
    path = tmp_path / "index.bin"
    index.save(path)
    before = path.read_bytes()
    index.add([2], np.array([[3, 4]], np.uint8))

    def crash(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk gone"):
        index.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["index.bin"]


# -- misuse ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [0, 7, 12, 136, -8, "64", 64.0, True])
def test_invalid_widths_are_rejected(bits: object) -> None:
    with pytest.raises(CodeWidthError, match="bits must be a multiple of 8 in 8..128"):
        HammingIndex(bits)  # type: ignore[arg-type]


def test_codes_of_the_wrong_width_dtype_or_shape_are_rejected() -> None:
    index = HammingIndex(64)
    with pytest.raises(CodeWidthError, match=r"shape \(n, 8\) for a 64-bit index, got \(2, 4\)"):
        index.add([1, 2], np.zeros((2, 4), np.uint8))
    with pytest.raises(CodeWidthError, match="dtype uint8.*got int64"):
        index.search_radius(np.zeros((1, 8), np.int64), 1)
    with pytest.raises(CodeWidthError, match=r"reshape\(1, -1\)"):
        index.search_knn(np.zeros(8, np.uint8), 1)
    with pytest.raises(CodeWidthError, match="numpy uint8 array.*got list"):
        index.search_radius([[0] * 8], 1)  # type: ignore[arg-type]
    assert issubclass(CodeWidthError, ValueError)


def test_bad_ids_and_parameters_are_rejected() -> None:
    index = HammingIndex(8)
    with pytest.raises(HammingIndexError, match="ids has 1 entries but codes has 2 rows"):
        index.add([1], np.zeros((2, 1), np.uint8))
    with pytest.raises(HammingIndexError, match="ids must be integers.*float64"):
        index.add([1.5], np.zeros((1, 1), np.uint8))
    with pytest.raises(HammingIndexError, match="one-dimensional"):
        index.remove([[1]])
    with pytest.raises(HammingIndexError, match="max_distance must be >= 0, got -1"):
        index.search_radius(np.zeros((1, 1), np.uint8), -1)
    with pytest.raises(HammingIndexError, match="k must be >= 1, got 0"):
        index.search_knn(np.zeros((1, 1), np.uint8), 0)
    with pytest.raises(HammingIndexError, match="max_distance must be an integer"):
        index.search_radius(np.zeros((1, 1), np.uint8), 1.5)  # type: ignore[arg-type]
    with pytest.raises(HammingIndexError, match="threads must be >= 1"):
        index.search_radius(np.zeros((4, 1), np.uint8), 1, threads=0)
    with pytest.raises(ValueError, match="between 2 and 64 tables"):
        HammingIndex(64, IndexConfig(groups=(1,)))


def test_empty_index_answers_empty() -> None:
    index = HammingIndex(32)
    q = np.zeros((3, 4), np.uint8)
    assert len(index) == 0
    res = index.search_radius(q, 4)
    assert len(res) == 3 and res.ids.size == 0 and res.lims.tolist() == [0, 0, 0, 0]
    assert index.search_knn(q, 5).ids.size == 0
    assert index.remove([1, 2]) == 0
    assert len(index.search_radius(np.zeros((0, 4), np.uint8), 1)) == 0


def test_loading_a_different_width_raises(tmp_path: Path) -> None:
    path = tmp_path / "i.bin"
    HammingIndex(32).save(path)
    with pytest.raises(CodeWidthError, match="holds 32-bit codes, expected 64-bit"):
        HammingIndex.load(path, bits=64)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b"NOTANIDX" + b[8:], "bad magic"),
        (lambda b: b[:8] + (99).to_bytes(4, "little") + b[12:], "format version 99"),
        (lambda b: b[:-5] + bytes([b[-5] ^ 0xFF]) + b[-4:], "checksum mismatch"),
        (lambda b: b + b"extra", "unexpected bytes"),
        (lambda b: b[:20] + b"}" + b[21:], "header checksum mismatch"),
    ],
)
def test_corrupt_files_raise_a_clear_error(tmp_path: Path, damage, message: str) -> None:
    index = HammingIndex(64)
    index.add(np.arange(50), make_codes(np.random.default_rng(4), 50, 64))
    path = tmp_path / "i.bin"
    index.save(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(IndexFormatError, match=message):
        HammingIndex.load(path)


def test_missing_file_or_directory_raise_format_errors(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="no such index file"):
        HammingIndex.load(tmp_path / "missing.bin")
    with pytest.raises(IndexFormatError, match="is a directory"):
        HammingIndex.load(tmp_path)
