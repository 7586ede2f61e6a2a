"""Paired A/B of ``CollectionState.search``: another checkout's (``--before``) against this one's,
query by query over the same index, so a noisy machine slows both alike.

Usage (from the repo root; see benchmarks/README.md, "Serving state that fits"):
  nice -n 5 .venv/bin/python benchmarks/search_ab.py --before ../main --items 100000 1000000

The items, codes and queries are benchmarks/serving_memory.py's. Both states hold the same items
(the before one through its one-item ``remember``, this one's in batches) over one
``HammingIndex``; each query runs on both, in alternating order, and their hits (ids, distances,
metadata) must agree. Prints p50 / p99 of each and the median of the per-query ratios, for k=10
by code unfiltered and with a 1% filter.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_memory import BITS, _codes, _meta  # noqa: E402

QUERIES = 1500


def _before(checkout: Path) -> ModuleType:
    """The other checkout's collection module, its ranking module imported beside it."""
    tmp = Path(tempfile.mkdtemp(prefix="bitseek-ab-"))
    shutil.copy(checkout / "service" / "ranking.py", tmp / "before_ranking.py")
    source = (checkout / "service" / "collection.py").read_text()
    (tmp / "before_collection.py").write_text(
        source.replace("from service.ranking import", "from before_ranking import")
    )
    sys.path.insert(0, str(tmp))
    return importlib.import_module("before_collection")


def run(before: ModuleType, n: int) -> None:
    from service.code_column import ColumnedIndex
    from service.collection import CollectionState, Serving
    from service.config import InputLimits
    from service.index import HammingIndex
    from service.modalities import modality_of

    codes = _codes(n)
    nums = np.arange(1, n + 1, dtype=np.int64)
    inner = HammingIndex(BITS)
    inner.add(nums, codes)
    modality = modality_of("vector", {"dim": 2}, InputLimits())
    old = before.CollectionState("c", modality, 0.0)
    old_serving = before.Serving(1, None, inner)
    for i in range(1, n + 1):
        old.remember(i, f"doc-{i:08d}", _meta(i))
    new = CollectionState("c", modality, 0.0)
    new_serving = Serving(1, None, ColumnedIndex.holding(inner, BITS, nums, codes))  # type: ignore[arg-type]
    for at in range(1, n + 1, 10_000):
        new.remember([(i, f"doc-{i:08d}", _meta(i)) for i in range(at, min(n, at + 9_999) + 1)])
    rng = np.random.default_rng(1)
    noise = np.packbits(rng.random((QUERIES, BITS)) < 0.03, axis=1)
    queries = (codes[rng.integers(0, n, QUERIES)] ^ noise)[:, None, :]
    for name, where in (("k=10", None), ("k=10, 1% filter", {"label": 7})):
        times: dict[str, list[float]] = {"before": [], "this": []}
        for j, q in enumerate(queries):
            runs = [("before", old, old_serving), ("this", new, new_serving)]
            hits = {}
            for label, state, serving in runs if j % 2 else runs[::-1]:
                start = time.perf_counter()
                found = state.search(serving, q, None, 10, where)
                times[label].append(time.perf_counter() - start)
                hits[label] = [(h.id, h.distance, h.metadata) for h in found.hits()]
            assert hits["before"] == hits["this"], (name, j)
        a, b = (np.asarray(times[k][200:]) * 1e3 for k in ("before", "this"))
        print(
            f"{n:,} items, {name}: before p50 {np.median(a):.3f} p99 {np.percentile(a, 99):.3f}"
            f" | this p50 {np.median(b):.3f} p99 {np.percentile(b, 99):.3f} ms"
            f" | median ratio {np.median(b / a):.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", type=Path, required=True, help="a checkout to compare with")
    ap.add_argument("--items", nargs="+", type=int, default=[100_000, 1_000_000])
    args = ap.parse_args()
    before = _before(args.before)
    for n in args.items:
        run(before, n)


if __name__ == "__main__":
    main()
