"""One-query index calls as the service makes them: microseconds per call, median over queries.

Usage: ``PYTHONPATH=ROOT python benchmarks/index_percall.py ROOT DB [REPEAT]``, where ROOT holds
the ``service`` package to time (this checkout, or another revision exported with
``git archive``), DB a Bitseek data directory's ``bitseek.sqlite3`` with 32-bit codes, and
REPEAT copies the codes that many times under new ids. Each of 50 queries drawn from the
collection is timed as the mean of 5 calls after one warm-up call.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from collections.abc import Callable

import numpy as np


def main(argv: list[str]) -> None:
    sys.path.insert(0, argv[0])
    from service.index import HammingIndex

    rep = int(argv[2]) if len(argv) > 2 else 1
    con = sqlite3.connect(f"file:{argv[1]}?mode=ro", uri=True)
    rows = con.execute("select num, code from items where code is not null").fetchall()
    nums = np.array([r[0] for r in rows], dtype=np.int64)
    codes = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.uint8).reshape(len(rows), -1)
    if rep > 1:
        codes = np.tile(codes, (rep, 1))
        nums = np.arange(len(codes), dtype=np.int64)
    index = HammingIndex(8 * codes.shape[1])
    index.add(nums, codes)
    qs = codes[np.random.RandomState(0).choice(len(codes), 50, replace=False)]

    def median_us(f: Callable[[np.ndarray], object]) -> float:
        out = []
        for q in qs:
            f(q[None])
            t = time.perf_counter()
            for _ in range(5):
                f(q[None])
            out.append((time.perf_counter() - t) / 5)
        return float(np.median(out)) * 1e6

    cases: dict[str, Callable[[np.ndarray], object]] = {
        "knn11": lambda q: index.search_knn(q, 11),
        "knn3": lambda q: index.search_knn(q, 3),
        "knn100": lambda q: index.search_knn(q, 100),
        "r0": lambda q: index.search_radius(q, 0),
        "r2": lambda q: index.search_radius(q, 2),
        "len": lambda q: len(index),
    }
    for name, f in cases.items():
        print(len(codes), name, f"{median_us(f):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
