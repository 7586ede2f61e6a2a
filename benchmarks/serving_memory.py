"""What a collection's serving state costs per item, how fast it starts, and filtered search.

Usage (from the repo root; see benchmarks/README.md, "Serving state that fits"):
  nice -n 10 .venv/bin/python benchmarks/serving_memory.py --sizes 100000 1000000 \
      [--startup 1000000] [--scratch /tmp/bitseek-serving] [--name serving_memory]

Items have ids ``doc-00000001`` and metadata ``{"label": i % 100, "lang": "en" | "fr"}`` (a
``label`` filter matches 1% of them, ``lang`` a third), with 32-bit codes given directly:
2,000 random centres, each item a centre with every bit flipped with probability 0.06.
Each size runs in a fresh process:
- per-item RSS of the state beyond the index: RSS after filling the collection's items and
  bitmaps minus RSS before (the index and the codes already built), after ``malloc_trim``;
  the code column (the copy of the codes that lets a selective filter scan its items) apart;
- search p50 / p99 by code, k=10, unfiltered and with a 1% and a 33% filter (600 queries, the
  first 100 left out as warm-up).
``--startup N`` writes N items with their codes into a SQLite store under ``--scratch`` once,
then times ``Registry.load`` in a fresh process and reads its RSS, twice: without a saved index
(the index is built from the stored codes; the process then saves it) and from that snapshot.
The same script measures main's dict-based state (``PYTHONPATH`` at a checkout of it: the fill
falls back to its one-item ``remember``) for before/after figures on one machine.
Results: benchmarks/results/<name>.json; the table is printed at the end.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BITS = 32
QUERIES = 600


def _rss() -> int:
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _codes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, (2000, BITS // 8), dtype=np.uint8)
    flips = np.packbits(rng.random((n, BITS)) < 0.06, axis=1)
    return centres[rng.integers(0, 2000, n)] ^ flips


def _meta(i: int) -> dict[str, Any]:
    return {"label": i % 100, "lang": "fr" if i % 3 == 0 else "en"}


def _latencies(fn: Any, queries: np.ndarray) -> dict[str, float]:
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        out.append(time.perf_counter() - t)
    ms = np.asarray(out[100:]) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def child_state(n: int) -> dict[str, Any]:
    """Per-item RSS and search latency of one collection of ``n`` items, in this process."""
    from service.collection import CollectionState, Serving
    from service.config import InputLimits
    from service.index import HammingIndex
    from service.modalities import modality_of

    codes = _codes(n)
    nums = np.arange(1, n + 1, dtype=np.int64)
    inner = HammingIndex(BITS)
    inner.add(nums, codes)
    state = CollectionState("c", modality_of("vector", {"dim": 2}, InputLimits()), 0.0)
    compact = hasattr(state, "items")  # main's state: dicts, one-item remember, bare index
    before = _rss()
    index: Any = inner
    if compact:
        from service.code_column import ColumnedIndex

        index = ColumnedIndex.holding(inner, BITS, nums, codes)
    column = _rss()
    state.serving = Serving(1, None, index)  # type: ignore[arg-type]  # searches need no model
    start = time.perf_counter()
    for at in range(1, n + 1, 10_000):
        rows = [(i, f"doc-{i:08d}", _meta(i)) for i in range(at, min(n, at + 9_999) + 1)]
        if compact:
            state.remember(rows)
        else:
            for row in rows:
                state.remember(*row)  # type: ignore[call-arg]
    fill = time.perf_counter() - start
    after = _rss()
    rng = np.random.default_rng(1)
    noise = np.packbits(rng.random((QUERIES, BITS)) < 0.03, axis=1)
    queries = (codes[rng.integers(0, n, QUERIES)] ^ noise)[:, None, :]

    def timed(where: dict[str, Any] | None) -> dict[str, float]:
        serving = state.serving
        return _latencies(lambda q: state.search(serving, q, None, 10, where), queries)  # type: ignore[arg-type]

    searches = {
        "k10": timed(None),
        "k10_1pct": timed({"label": 7}),
        "k10_33pct": timed({"lang": "fr"}),
    }
    paths = {}
    if compact:  # each filter the other way too: what PROBE_COST chooses between
        import service.collection

        chosen = service.collection.PROBE_COST
        service.collection.PROBE_COST = 0
        paths["1pct_probed"] = timed({"label": 7})
        service.collection.PROBE_COST = 10**12
        paths["33pct_scanned"] = timed({"lang": "fr"})
        service.collection.PROBE_COST = chosen
    return {
        "items": n,
        "state_bytes_per_item": (after - column) / n,
        "column_bytes_per_item": (column - before) / n,
        "fill_s": fill,
        "search": searches,
        "forced_path": paths,
    }


def build_store(n: int, scratch: Path) -> Path:
    """A data directory with one collection of ``n`` vector items and their 32-bit codes."""
    from service.config import InputLimits
    from service.registry import Registry
    from service.sqlite_store import SqliteStore
    from service.store import ItemWrite

    data = scratch / f"data-{n}"
    if (data / "done").exists():
        return data
    store = SqliteStore(data / "bitseek.sqlite3", synchronous="OFF")
    registry = Registry(store, _Backend(), data, "cpu", InputLimits())
    registry.create("c", "vector", {"dim": 2, "bits": BITS})
    registry.install_model("c", _CodesOnly())
    codes = _codes(n)
    payload = np.zeros(2, np.float32).tobytes()
    for at in range(0, n, 10_000):
        writes = [
            ItemWrite(f"doc-{i + 1:08d}", payload, _meta(i + 1), codes[i].tobytes())
            for i in range(at, min(n, at + 10_000))
        ]
        store.upsert_items("c", writes, 1)
    store.close()
    (data / "done").touch()
    return data


class _CodesOnly:
    """A model for a collection whose codes are given: it loads, but never encodes."""

    modality, bits, input_shape, metrics = "vector", BITS, (2,), {"note": "codes given"}

    def encode(self, items: Any) -> np.ndarray:
        raise RuntimeError("codes are given directly")

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "codes-only").touch()


class _Backend:
    def load(self, directory: Path, device: str) -> _CodesOnly:
        return _CodesOnly()


def child_startup(data: Path) -> dict[str, Any]:
    from service import snapshot
    from service.config import InputLimits
    from service.registry import Registry
    from service.sqlite_store import SqliteStore

    base = _rss()
    start = time.perf_counter()
    store = SqliteStore(data / "bitseek.sqlite3")
    registry = Registry(store, _Backend(), data, "cpu", InputLimits(), snapshots=True)
    registry.load()
    took = time.perf_counter() - start
    state, serving = registry.serving("c")
    inner = serving.index.inner
    rss = _rss() - base
    snapshot.save_all(registry)  # for the next start (a no-op when it loaded one)
    return {
        "items": state.size,
        "startup_s": took,
        "rss_beyond_index_bytes_per_item": (rss - inner.nbytes()) / state.size,
        "index_bytes_per_item": inner.nbytes() / state.size,
    }


def _child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: list[dict[str, Any]], startup: dict[str, Any] | None) -> str:
    lines = [
        "| items | state B/item | code column B/item | k=10 p50 / p99 ms | 1% filter p50 / p99 ms"
        " | 33% filter p50 / p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["search"]
        cells = [f"{s[c]['p50_ms']:.3f} / {s[c]['p99_ms']:.3f}" for c in s]
        lines.append(
            f"| {r['items']:,} | {r['state_bytes_per_item']:.1f} | "
            f"{r['column_bytes_per_item']:.1f} | " + " | ".join(cells) + " |"
        )
    for how, run in (startup or {}).items():
        lines.append(
            f"\nstart-up of {run['items']:,} items ({how}): {run['startup_s']:.2f} s, RSS beyond"
            f" the index {run['rss_beyond_index_bytes_per_item']:.1f} B/item (index"
            f" {run['index_bytes_per_item']:.1f} B/item)"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="*", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--startup", type=int, default=None, help="items for the start-up run")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/bitseek-serving"))
    ap.add_argument("--name", default="serving_memory")
    ap.add_argument("--child-state", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-startup", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_state:
        print(json.dumps(child_state(args.child_state)))
        return
    if args.child_startup:
        print(json.dumps(child_startup(args.child_startup)))
        return
    rows = [_child(["--child-state", str(n)]) for n in args.sizes]
    startup = None
    if args.startup:
        data = build_store(args.startup, args.scratch)
        for old in (data / "collections" / "c" / "index").glob("*.idx"):
            old.unlink()
        startup = {
            "rebuild": _child(["--child-startup", str(data)]),
            "snapshot": _child(["--child-startup", str(data)]),
        }
    result = {
        "command": " ".join(sys.argv),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": os.getloadavg(),
        "sizes": rows,
        "startup": startup,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows, startup))


if __name__ == "__main__":
    main()
