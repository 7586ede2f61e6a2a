"""Where a radius search's time goes: the kernel's stages, this checkout against a git revision.

Usage (niced, one thread)::

    nice -n 10 .venv/bin/python benchmarks/index_stages.py afa5de0 32:2,64:2,64:3

For each ``bits:radius`` on ``index_bench.py``'s clustered codes (1M items, 1,000 queries,
``--centre-spread 3 --spread 1``), both versions' kernel pieces run in a numba loop over the
batch, each column adding one stage: probe (slots and narrowing), + verify (or copy) the
candidates, + resolve other tables' rows to ids, + sort by (distance, id); "whole" is
``search_radius`` on the batch, which also writes the output. Microseconds per query in the
calling thread's CPU time, best of 3, the two versions alternating. Private kernel functions
are called directly, so a revision must have the same pieces (``_probe``, ``_verify``,
``_resolve``, ``_sort_hits``, ``_earlier``).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.index_bench import baseline_index_class, make_data  # noqa: E402
from service.index import HammingIndex  # noqa: E402
from service.index import _kernels as current_kernels  # noqa: E402
from service.index.layout import to_words  # noqa: E402


def stages_of(kernels: Any) -> Any:
    """A numba loop over a batch that runs ``kernels``' stages up to ``upto`` (1-4)."""
    probe, verify, resolve = kernels._probe, kernels._verify, kernels._resolve
    sort_hits, earlier_of = kernels._sort_hits, kernels._earlier

    @njit
    def stages(ix, queries, r, rad, lo, hi, max_probes, upto):  # type: ignore[no-untyped-def]
        buckets = np.empty((5, max_probes), np.int64)
        stats = np.zeros(2, np.int64)
        hit_ids = np.empty(1 << 20, np.int64)
        hit_d = np.empty(1 << 20, np.int32)
        earlier = earlier_of(ix, rad, lo)
        total = 0
        for i in range(queries.shape[0]):
            q = queries[i]
            nb, need = probe(ix, q, rad, lo, hi, buckets, stats)
            if upto < 2 or need == 0:
                continue
            count, pending = verify(ix, q, r, rad, lo, earlier, nb, buckets, hit_ids, hit_d, 0)
            if upto >= 3 and count > pending:
                count = resolve(hit_ids, hit_d, pending, count, ix.ids, ix.alive)
            if upto >= 4 and count > 1:
                sort_hits(hit_ids, hit_d, count, r)
            total += count
        return total

    return stages


def main(argv: list[str]) -> None:
    rev, settings = argv[0], [tuple(int(x) for x in s.split(":")) for s in argv[1].split(",")]
    old_class = baseline_index_class(rev)
    old_kernels = importlib.import_module(old_class.__module__.rsplit(".", 1)[0] + "._kernels")
    sides = {
        rev: (stages_of(old_kernels), old_class),
        "this checkout": (stages_of(current_kernels), HammingIndex),
    }
    data: dict[int, tuple[np.ndarray, ...]] = {}
    for bits, r in settings:
        if bits not in data:
            data[bits] = make_data("clustered", 1_000_000, 1000, bits, 1.0, 3.0)
        xb, xq = data[bits]
        words = to_words(xq, bits)
        indexes = {}
        for name, (_, cls) in sides.items():
            index = cls(bits)
            index.add(np.arange(len(xb), dtype=np.int64), xb)
            index.search_radius(xq[:16], r)  # warm, and keep the plan
            indexes[name] = index
        best: dict[tuple[str, int], float] = {}
        for _ in range(3):
            for name, (stages, _) in sides.items():
                index = indexes[name]
                snap = index._snap
                plan = snap.base.plans[r]
                for upto in (1, 2, 3, 4, 5):
                    t = time.thread_time()
                    if upto == 5:
                        index.search_radius(xq, r)
                    else:
                        args = (plan.rad, plan.lo, plan.hi, plan.probes, upto)
                        stages(snap.arrays, words, r, *args)
                    us = (time.thread_time() - t) / len(xq) * 1e6
                    best[(name, upto)] = min(best.get((name, upto), float("inf")), us)
        for name in sides:
            cols = "  ".join(
                f"{label} {best[(name, u)]:.1f}"
                for u, label in enumerate(("probe", "+verify", "+resolve", "+sort", "whole"), 1)
            )
            print(f"{bits}b r={r} {name}: {cols} us/query", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
