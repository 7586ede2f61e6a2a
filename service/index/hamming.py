"""``HammingIndex``: exact Hamming-ball and k-NN search over packed binary codes.

Items live in two parts. The *base* is a set of immutable sorted tables (``layout.Tables``)
probed by bit-flip enumeration or multi-index hashing; the *delta* is a small buffer of codes
added since the base was built, searched by a popcount scan. Removing an item marks its base
row dead (a tombstone) or drops it from the delta. When the delta outgrows
``IndexConfig.delta_fraction`` of the base or a quarter of the base is dead, the writer rebuilds
the base from the live items.

Concurrency: the base, tombstones and delta form one immutable ``_Snapshot`` that writers
replace with a single reference assignment under a writer lock. A search reads that reference
once, so it sees a consistent state as of its start (every completed ``add``/``remove`` or none
of a running one), never blocks on a writer and may run in any number of threads; the kernels
release the GIL.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from math import comb
from pathlib import Path
from typing import Any

import numpy as np

from service.index import _kernels
from service.index.errors import CodeWidthError, HammingIndexError
from service.index.layout import (
    Tables,
    build_tables,
    check_bits,
    default_groups,
    from_words,
    n_words,
    probe_count,
    schedule,
    split_pieces,
    to_words,
)
from service.index.result import SearchResult, SearchStats

log = logging.getLogger(__name__)

_SAMPLE_QUERIES = 16  # queries whose candidate counts decide a batch's strategy


@dataclass(frozen=True)
class CostModel:
    """Rough nanosecond costs used to pick a strategy (measured on an x86 server core).

    A bit-flip bucket's items are all hits at a known distance, so they cost ``copy``; a
    multi-index candidate costs ``candidate`` whether or not it is a hit. Both include
    fetching the item; the cost of sorting and returning hits is the same for every
    strategy and left out.
    """

    probe_direct: float = 8.0  # a lookup where the directory slot is the bucket
    probe_search: float = 25.0  # a lookup that narrows a directory slot to the bucket
    candidate: float = 6.0  # one multi-index candidate: distance and earlier-table checks
    copy: float = 1.5  # one item of a bit-flip bucket
    scan: float = 1.0  # one item of a linear popcount pass (per word)
    # A k-NN shell's lookup against ``probe_*``: a shell narrows and verifies each bucket before
    # the next slot is read, so its cache misses do not overlap as a ball's do (measured on
    # 32-bit 20 Newsgroups codes, 100,000 items: ~110 ns per shell probe, scans ~2.5 ns/item).
    shell_probe: float = 1.7


@dataclass(frozen=True)
class IndexConfig:
    """Every setting that shapes an index; saved with it.

    groups : number of substring tables of each table group; ``None`` picks
        ``layout.default_groups(bits)``: (1,) up to 16 bits, (1, 2) up to 32, (2,) up to 64,
        (4, 5) at 128. A group of 1 is bit-flip enumeration over the whole code (<= 32 bits).
    delta_fraction : rebuild once the unindexed delta exceeds this share of the base (or
        ``min_delta`` items, whichever is larger).
    """

    groups: tuple[int, ...] | None = None
    delta_fraction: float = 1 / 32
    min_delta: int = 4096
    dead_fraction: float = 0.25
    cost: CostModel = field(default_factory=CostModel)

    def __post_init__(self) -> None:
        if self.groups is not None and not self.groups:
            raise ValueError("groups must name at least one table group, e.g. (2,), or be None")
        if not 0 < self.delta_fraction <= 1:
            raise ValueError(f"delta_fraction must be in (0, 1], got {self.delta_fraction}")
        if not 0 < self.dead_fraction <= 1:
            raise ValueError(f"dead_fraction must be in (0, 1], got {self.dead_fraction}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")


@dataclass(frozen=True)
class _Plan:
    strategy: str  # "bitflip" | "multi-index" | "scan"
    group: int
    rad: np.ndarray
    lo: int = 0  # the group's tables, lo..hi
    hi: int = 0
    probes: int = 0  # per query; 0 for a scan
    radii: tuple[int, ...] = ()  # ``rad`` as reported; () for a scan

    @classmethod
    def of(cls, base: Tables, strategy: str, group: int, rad: np.ndarray) -> _Plan:
        lo, hi = base.group_range(group)
        if strategy == "scan":
            return cls(strategy, group, rad, lo, hi)
        probes = probe_count(base.pieces[lo:hi], rad)
        return cls(strategy, group, rad, lo, hi, probes, tuple(int(x) for x in rad))

    def stats(self, queries: int, stats: np.ndarray) -> SearchStats:
        scan = self.strategy == "scan"
        probes, candidates = stats.tolist()
        return SearchStats(
            self.strategy,
            0 if scan else self.hi - self.lo,
            self.radii,
            queries,
            probes,
            candidates,
            queries if scan else 0,
        )


@dataclass(frozen=True)
class _KnnPlan:
    """What a k-NN needs about the base tables: the group it grows and the costs it weighs."""

    lo: int
    hi: int
    shell: np.ndarray  # float64 (m, 33): probes of each table's shell of s flips
    probe_cost: float
    cand_cost: float  # per candidate, all words
    scan_cost: float  # per scanned item, all words


@dataclass(frozen=True)
class _Snapshot:
    base: Tables
    alive: np.ndarray  # bool (n_base,), canonical order
    n_dead: int
    dcodes: np.ndarray  # uint64 (n_delta, W)
    dids: np.ndarray  # int64 (n_delta,)
    arrays: _kernels.IndexArrays = field(init=False, compare=False, repr=False)
    # One-query kernels' entry points for this snapshot's argument types (see _fast)
    entries: dict[tuple[str, bool], Callable[..., Any]] = field(
        init=False, compare=False, repr=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        b = self.base
        arrays = _kernels.IndexArrays(
            b.codes, b.rows, b.ids, self.alive, b.dirs, b.dstart,
            b.twords, b.tshift, b.tlen, b.tpbits, self.dcodes, self.dids,
        )  # fmt: skip
        object.__setattr__(self, "arrays", arrays)

    @property
    def n_live(self) -> int:
        return self.base.n - self.n_dead + int(self.dids.shape[0])


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix="hamming")
        return _pool


class HammingIndex:
    """Exact Hamming-distance index over packed binary codes of ``bits`` bits.

    Parameters
    ----------
    bits : code width, one of 8, 16, ..., 128.
    config : ``IndexConfig``; defaults pick the table layout from ``bits``.

    Codes are uint8 arrays of shape (n, bits // 8) in ``numpy.packbits`` order; ids are int64.
    ``search_radius`` and ``search_knn`` choose bit-flip enumeration, multi-index hashing or a
    linear scan per batch from the radius, the size and a sample of candidate counts, and report
    the choice in ``SearchResult.stats``. A batch of one query (the service's usual call) skips
    the batch machinery: its plan is kept with the base tables and the compiled kernel is
    called without numba's per-call argument typing (see ``_fast``).
    """

    def __init__(self, bits: int, config: IndexConfig | None = None) -> None:
        self.bits = check_bits(bits)
        self.config = config or IndexConfig()
        self.groups = self.config.groups or default_groups(self.bits)
        for m in self.groups:
            split_pieces(self.bits, m)  # raises if a group cannot split this width
        self._lock = threading.Lock()
        w = n_words(self.bits)
        empty = build_tables(self.bits, self.groups, np.empty((0, w), np.uint64), _EMPTY_IDS)
        self._snap = _Snapshot(empty, np.ones(0, bool), 0, np.empty((0, w), np.uint64), _EMPTY_IDS)

    # -- writers ---------------------------------------------------------------------------

    def add(self, ids: Sequence[int] | np.ndarray, codes: np.ndarray) -> None:
        """Insert items; an id already present gets the new code (last one wins in a batch).

        ids : int64-convertible (n,); codes : uint8 (n, bits // 8).
        """
        words = self._words(codes, "codes")
        id_arr = _as_ids(ids, "ids")
        if id_arr.shape[0] != words.shape[0]:
            raise HammingIndexError(
                f"ids has {id_arr.shape[0]} entries but codes has {words.shape[0]} rows"
            )
        if id_arr.size == 0:
            return
        # Keep the last occurrence of each id in the batch.
        rev_unique, rev_first = np.unique(id_arr[::-1], return_index=True)
        if rev_unique.size != id_arr.size:
            keep = np.sort(id_arr.size - 1 - rev_first)
            id_arr, words = id_arr[keep], words[keep]
        with self._lock:
            snap = self._drop(self._snap, id_arr)
            snap = _Snapshot(
                snap.base,
                snap.alive,
                snap.n_dead,
                np.concatenate([snap.dcodes, words]),
                np.concatenate([snap.dids, id_arr]),
            )
            self._snap = self._maybe_rebuild(snap)

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Delete items by id; unknown ids are ignored. Returns how many were removed."""
        id_arr = _as_ids(ids, "ids")
        with self._lock:
            before = self._snap.n_live
            snap = self._drop(self._snap, id_arr)
            self._snap = self._maybe_rebuild(snap)
            return before - snap.n_live

    def rebuild(self) -> None:
        """Fold the delta and tombstones into freshly built tables now."""
        with self._lock:
            self._snap = self._rebuilt(self._snap)

    def _drop(self, snap: _Snapshot, id_arr: np.ndarray) -> _Snapshot:
        if id_arr.size == 0 or snap.n_live == 0:
            return snap
        alive, n_dead = snap.alive, snap.n_dead
        if snap.base.n:
            hit = np.isin(snap.base.ids, id_arr) & alive
            if hit.any():
                alive = alive & ~hit  # a new array: readers keep the old one
                n_dead += int(hit.sum())
        dcodes, dids = snap.dcodes, snap.dids
        if dids.size:
            keep = ~np.isin(dids, id_arr)
            if not keep.all():
                dcodes, dids = dcodes[keep], dids[keep]
        return _Snapshot(snap.base, alive, n_dead, dcodes, dids)

    def _maybe_rebuild(self, snap: _Snapshot) -> _Snapshot:
        cfg = self.config
        delta_limit = max(cfg.min_delta, int(cfg.delta_fraction * snap.base.n))
        dead_limit = max(cfg.min_delta, int(cfg.dead_fraction * snap.base.n))
        if snap.dids.shape[0] > delta_limit or snap.n_dead > dead_limit:
            return self._rebuilt(snap)
        return snap

    def _rebuilt(self, snap: _Snapshot) -> _Snapshot:
        live = snap.alive
        words = np.concatenate([snap.base.codes[0][live], snap.dcodes])
        ids = np.concatenate([snap.base.ids[live], snap.dids])
        base = build_tables(self.bits, self.groups, words, ids)
        log.debug("rebuilt %d-bit index: %d items, groups %s", self.bits, base.n, self.groups)
        w = n_words(self.bits)
        return _Snapshot(base, np.ones(base.n, bool), 0, np.empty((0, w), np.uint64), _EMPTY_IDS)

    # -- readers ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._snap.n_live

    def __repr__(self) -> str:
        return f"HammingIndex(bits={self.bits}, items={len(self)}, groups={self.groups})"

    def nbytes(self) -> int:
        """Bytes held by the index's arrays (tables, ids, directories, tombstones, delta)."""
        s = self._snap
        return s.base.nbytes() + s.alive.nbytes + s.dcodes.nbytes + s.dids.nbytes

    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Every live item as ``(ids int64 (n,), codes uint8 (n, bits // 8))``."""
        s = self._snap
        ids = np.concatenate([s.base.ids[s.alive], s.dids])
        words = np.concatenate([s.base.codes[0][s.alive], s.dcodes])
        return ids, from_words(words, self.bits)

    def search_radius(
        self, codes: np.ndarray, max_distance: int, *, threads: int = 1, ordered: bool = True
    ) -> SearchResult:
        """Every item within Hamming distance ``max_distance`` (inclusive) of each query.

        codes : uint8 (n_queries, bits // 8); threads : worker threads for the batch.
        Returns a ``SearchResult``; each query's hits are sorted by (distance, id), or with
        ``ordered=False`` left in the order found (as FAISS's range search leaves them), for
        callers that rank hits themselves: a big ball then skips sorting thousands of them.
        """
        # Nothing is farther than the width, so a larger radius is the whole-code ball.
        if type(max_distance) is not int or max_distance < 0:
            max_distance = _check_int(max_distance, "max_distance", 0)
        r = min(max_distance, self.bits)
        snap = self._snap
        row = self._one_query(codes)
        if threads != 1:
            _check_int(threads, "threads", 1)  # one query runs on one thread
        if row is not None:  # one query: no batch machinery, the plan usually cached
            plan = snap.base.plans.get(r)
            if not isinstance(plan, _Plan):
                plan = self._plan(snap, r, to_words(codes, self.bits))
            scan = plan.strategy == "scan"
            args = (r, plan.rad, plan.lo, plan.hi, scan, plan.probes, bool(ordered))
            lims, ids, dist, stats = _fast(snap, _kernels.radius_one, row, args)
            return SearchResult(lims, ids, dist, plan.stats(1, stats))
        queries = self._words(codes, "codes")
        plan = self._plan(snap, r, queries)
        scan = plan.strategy == "scan"

        def run(q: np.ndarray) -> tuple[np.ndarray, ...]:
            return _kernels.radius_search(
                snap.arrays, q, r, plan.rad, plan.lo, plan.hi, scan, plan.probes, bool(ordered)
            )

        lims, ids, dist, stats = _run_chunks(run, queries, threads)
        return SearchResult(lims, ids, dist, plan.stats(queries.shape[0], stats))

    def search_knn(
        self,
        codes: np.ndarray,
        k: int,
        *,
        threads: int = 1,
        with_ties: bool = False,
        ordered: bool = True,
    ) -> SearchResult:
        """The ``k`` nearest items of each query, exact, ties broken by smaller id;
        ``with_ties``: and every further item at the k-th's distance (a query's answer is then
        complete up to that distance, whatever the ids), sorted by (distance, id) or, with
        ``ordered=False``, in the order found (as ``search_radius``).

        Grows the Hamming ball of the group with the most tables one table shell at a time
        (incremental multi-index search: after flipping up to ``s`` bits in tables ``0..t``
        and ``s - 1`` in the rest, every item within ``m * s + t`` is known) until it holds
        ``k`` items; a query switches to a popcount scan once the next shell would make it
        cost more than the scan. Fewer than ``k`` hits only when the index holds fewer items.
        """
        if type(k) is not int or k < 1:
            k = _check_int(k, "k", 1)
        snap = self._snap
        plan = snap.base.plans.get("knn")
        if not isinstance(plan, _KnnPlan):
            plan = self._knn_plan(snap.base)
        costs = (plan.probe_cost, plan.cand_cost, plan.scan_cost)
        args = (k, self.bits, plan.shell, plan.lo, plan.hi, snap.n_live, *costs, bool(with_ties),
                bool(ordered))  # fmt: skip
        row = self._one_query(codes)
        if threads != 1:
            _check_int(threads, "threads", 1)  # one query runs on one thread
        if row is not None:  # one query: no batch machinery
            lims, ids, dist, stats = _fast(snap, _kernels.knn_one, row, args)
            n_queries = 1
        else:
            queries = self._words(codes, "codes")

            def run(q: np.ndarray) -> tuple[np.ndarray, ...]:
                return _kernels.knn_search(snap.arrays, q, *args)

            lims, ids, dist, stats = _run_chunks(run, queries, threads, k_stats=True)
            n_queries = queries.shape[0]
        m = plan.hi - plan.lo
        return SearchResult(
            lims,
            ids,
            dist,
            SearchStats(
                strategy="bitflip" if m == 1 else "multi-index",
                tables=m,
                table_radii=schedule(int(stats[3]), m),
                queries=n_queries,
                probes=int(stats[0]),
                candidates=int(stats[1]),
                scanned_queries=int(stats[2]),
            ),
        )

    def _knn_plan(self, base: Tables) -> _KnnPlan:
        """The k-NN set-up for these base tables, kept with them (they never change)."""
        # The group with the most tables has the cheapest large balls.
        g = max(range(len(self.groups)), key=lambda i: self.groups[i])
        lo, hi = base.group_range(g)
        shell = np.array(
            [[comb(p.length, s) for s in range(33)] for p in base.pieces[lo:hi]], np.float64
        )
        cost = self.config.cost
        w = n_words(self.bits)
        direct = bool(np.all(base.tpbits[lo:hi] == base.tlen[lo:hi]))
        probe_cost = (cost.probe_direct if direct else cost.probe_search) * cost.shell_probe
        plan = _KnnPlan(
            lo, hi, shell, float(probe_cost), float(cost.candidate * w), float(cost.scan * w)
        )
        base.plans["knn"] = plan
        return plan

    def _plan(self, snap: _Snapshot, r: int, queries: np.ndarray) -> _Plan:
        """Cheapest of each table group and a scan, from probe counts and sampled candidates."""
        base = snap.base
        cached = base.plans.get(r)
        if isinstance(cached, _Plan):
            return cached
        cost = self.config.cost
        w = n_words(self.bits)
        scan_cost = base.n * cost.scan * w
        best = _Plan.of(base, "scan", 0, np.zeros(0, np.int64))
        best_cost = scan_cost
        sample = queries[
            np.linspace(0, len(queries) - 1, min(len(queries), _SAMPLE_QUERIES), dtype=np.int64)
        ]
        for g, m in enumerate(self.groups):
            lo, hi = base.group_range(g)
            rad = np.array(schedule(r, m), np.int64)
            direct = bool(np.all(base.tpbits[lo:hi] == base.tlen[lo:hi]))
            per_probe = cost.probe_direct if direct else cost.probe_search
            est = probe_count(base.pieces[lo:hi], rad) * per_probe
            if est >= best_cost or base.n == 0:
                continue
            if len(sample):
                probes, cands = _kernels.count_candidates(
                    snap.arrays, sample, rad, lo, hi, probe_count(base.pieces[lo:hi], rad)
                )
                per_cand = cost.candidate * w if m > 1 else cost.copy
                est = (probes * per_probe + cands * per_cand) / len(sample)
            if est < best_cost:
                best_cost = est
                best = _Plan.of(base, "bitflip" if m == 1 else "multi-index", g, rad)
        if len(queries) and base.n:
            base.plans[r] = best  # base tables never change, so the choice holds for them
        return best

    # -- persistence -----------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the index to one file atomically (temporary file, fsync, rename)."""
        from service.index.persistence import save_index

        save_index(self, Path(path))

    @classmethod
    def load(cls, path: str | Path, bits: int | None = None) -> HammingIndex:
        """Read an index written by ``save``; ``bits`` (optional) must match the saved width."""
        from service.index.persistence import load_index

        return load_index(Path(path), bits)

    # -- validation ------------------------------------------------------------------------

    def _one_query(self, codes: Any) -> np.ndarray | None:
        """A well-formed one-row ``codes`` as its contiguous row of bytes, else None.

        Anything else (a batch, or a malformed argument, which ``_words`` then reports)
        takes the general path.
        """
        if (
            type(codes) is np.ndarray
            and codes.shape == (1, self.bits >> 3)
            and codes.dtype == np.uint8
        ):
            row = codes[0]
            return row if row.flags.c_contiguous else np.ascontiguousarray(row)
        return None

    def _words(self, codes: Any, name: str) -> np.ndarray:
        width = self.bits // 8
        if not isinstance(codes, np.ndarray):
            raise CodeWidthError(
                f"{name} must be a numpy uint8 array of shape (n, {width}), "
                f"got {type(codes).__name__}"
            )
        if codes.dtype != np.uint8:
            raise CodeWidthError(
                f"{name} must have dtype uint8 (packed bits, numpy.packbits order), "
                f"got {codes.dtype}"
            )
        if codes.ndim != 2 or codes.shape[1] != width:
            hint = "; use codes.reshape(1, -1) for one query" if codes.ndim == 1 else ""
            raise CodeWidthError(
                f"{name} must have shape (n, {width}) for a {self.bits}-bit index, "
                f"got {codes.shape}{hint}"
            )
        return to_words(codes, self.bits)


_EMPTY_IDS = np.empty(0, np.int64)


def _as_ids(ids: Any, name: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise HammingIndexError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        return _EMPTY_IDS
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise HammingIndexError(f"{name} must be integers (int64), got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and arr.max() > np.iinfo(np.int64).max:
        raise HammingIndexError(f"{name} must fit in int64, got {arr.max()}")
    return arr.astype(np.int64)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise HammingIndexError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise HammingIndexError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _fast(
    snap: _Snapshot, kernel: Any, row: np.ndarray, args: tuple[object, ...]
) -> tuple[np.ndarray, ...]:
    """``kernel(snap.arrays, row, *args)`` without numba's per-call dispatch.

    The entry point is kept per snapshot, kernel and query writability (the only thing about
    the arguments' types that varies: callers pass ``args`` of fixed types).
    """
    key = (kernel.__name__, row.flags.writeable)
    call = snap.entries.get(key)
    if call is None:
        call = _kernels.entry_point(kernel, (snap.arrays, row, *args))
        snap.entries[key] = call
    result: tuple[np.ndarray, ...] = call(snap.arrays, row, *args)
    return result


def _run_chunks(
    run: Callable[[np.ndarray], tuple[np.ndarray, ...]],
    queries: np.ndarray,
    threads: int,
    k_stats: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split the batch over ``threads`` workers and join their CSR outputs and stats.

    ``k_stats``: the last stat is a maximum (k-NN's largest ball), not a sum.
    """
    threads = _check_int(threads, "threads", 1)
    if threads == 1 or len(queries) < 2 * threads:
        lims, ids, dist, stats = run(queries)
        return lims, ids, dist, stats
    parts = list(_executor().map(run, np.array_split(queries, threads)))
    offsets = np.cumsum([0] + [p[0][-1] for p in parts[:-1]])
    lims = np.concatenate(
        [parts[0][0][:1]] + [p[0][1:] + o for p, o in zip(parts, offsets, strict=True)]
    )
    return (
        lims,
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
        _join_stats([p[3] for p in parts], k_stats),
    )


def _join_stats(stats: list[np.ndarray], k_stats: bool) -> np.ndarray:
    total = np.sum(stats, axis=0)
    if k_stats:
        total[-1] = max(int(s[-1]) for s in stats)
    return total
