"""Both storage backends on the same 100k items: the same answers, and what each costs.

Stores ``--n`` items (ids, metadata, text payloads, 32-bit codes) through ``SqliteStore`` and
``MilvusStore`` (Milvus Lite), builds each backend's index from the stored codes (``HammingIndex``
and ``MilvusIndex``), then runs radius, k-NN and widening searches with and without metadata
filters through ``ranking.rank`` (the path ``CollectionState.search`` takes) and checks that the
hits (ids, distances, order) are identical. A third of the codes sit within 2 bits of one code,
so the balls around it hold more than the 16,384 hits one Milvus search returns. Run::

    nice -n 10 .venv/bin/python benchmarks/milvus_agree.py --n 100000

Prints a table and writes benchmarks/results/milvus_agree.json (with the command).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.index import HammingIndex  # noqa: E402
from service.milvus_index import MilvusIndex  # noqa: E402
from service.milvus_store import MilvusStore  # noqa: E402
from service.ranking import rank  # noqa: E402
from service.sqlite_store import SqliteStore  # noqa: E402
from service.store import CodeIndex, ItemStore, ItemWrite  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BITS = 32


def make_items(n: int, seed: int) -> list[ItemWrite]:
    rng = np.random.RandomState(seed)
    codes = rng.randint(0, 256, (n, BITS // 8)).astype(np.uint8)
    crowd = n // 3  # within 2 bits of the zero code
    codes[:crowd] = 0
    for _ in range(2):
        bit = rng.randint(0, BITS, crowd)
        codes[np.arange(crowd), bit // 8] ^= (1 << (bit % 8)).astype(np.uint8) * (
            rng.rand(crowd) < 0.7
        )
    order = rng.permutation(n)
    return [
        ItemWrite(
            f"item{int(i):07d}",
            f"text of item {int(i)}".encode(),
            {"label": int(i) % 10, "even": int(i) % 2 == 0},
            codes[i].tobytes(),
        )
        for i in order
    ]


def fill(store: ItemStore, items: list[ItemWrite], batch: int) -> float:
    store.create_collection("bench", "text", {"bits": BITS})
    store.set_codes("bench", 1, [], active=1)
    start = time.perf_counter()
    for first in range(0, len(items), batch):
        store.upsert_items("bench", items[first : first + batch], 1)
    return time.perf_counter() - start


def build(store: ItemStore, index: CodeIndex) -> tuple[float, dict[int, str], dict[int, Any]]:
    start = time.perf_counter()
    keys = store.item_keys("bench")
    nums = np.asarray([k[0] for k in keys], dtype=np.int64)
    codes = np.frombuffer(b"".join(k[3] or b"" for k in keys), np.uint8).reshape(len(keys), -1)
    for first in range(0, len(keys), 20_000):
        index.add(nums[first : first + 20_000], codes[first : first + 20_000])
    took = time.perf_counter() - start
    return took, {k[0]: k[1] for k in keys}, {k[0]: json.loads(k[2]) for k in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=RESULTS / "milvus_agree.json")
    args = parser.parse_args()
    items = make_items(args.n, seed=0)
    work = Path(tempfile.mkdtemp(prefix="milvus-agree-"))
    sqlite = SqliteStore(work / "local" / "bitseek.sqlite3", "NORMAL")
    milvus = MilvusStore(str(work / "milvus" / "milvus.db"), work / "milvus", timeout=300.0)
    backends: dict[str, dict[str, Any]] = {}
    for name, store, index in (
        ("local", sqlite, HammingIndex(BITS)),
        ("milvus", milvus, MilvusIndex(milvus.client, BITS, timeout=300.0)),
    ):
        write_s = fill(store, items, args.batch)
        build_s, ids, meta = build(store, index)
        backends[name] = {"store": store, "index": index, "ids": ids, "meta": meta}
        backends[name]["timing"] = {"upsert_s": write_s, "index_build_s": build_s}
        print(f"{name}: upserted {args.n} items in {write_s:.1f}s, index built in {build_s:.1f}s")
    rng = np.random.RandomState(1)
    queries = [np.zeros(BITS // 8, np.uint8)] + [
        rng.randint(0, 256, BITS // 8).astype(np.uint8) for _ in range(args.queries - 1)
    ]
    for b in backends.values():  # compile HammingIndex's kernels before anything is timed
        rank(b["index"], queries[0][None], 2, 10, None, b["ids"].get, b["meta"])
    searches = [(0, None), (2, None), (4, None), (8, None), (None, 10), (None, 100),
                (None, 20_000), (1, 50)]  # fmt: skip
    filters: list[dict[str, Any] | None] = [None, {"label": 3}, {"even": True, "label": 4}]
    rows = []
    for radius, k in searches:
        for where in filters:
            row: dict[str, Any] = {"radius": radius, "k": k, "filter": where, "equal": True}
            answers = {}
            for name, b in backends.items():
                meta = b["meta"]
                keep = None
                if where:

                    def keep(num: int, meta: dict[int, Any] = meta, where: dict = where) -> bool:
                        return all(meta[num].get(key) == val for key, val in where.items())

                start = time.perf_counter()
                hits = []
                for q in queries:
                    ranked = rank(b["index"], q[None], radius, k, keep, b["ids"].get, meta)
                    hits.append([(h.id, h.distance) for h in ranked.hits()])
                row[f"{name}_ms"] = 1000 * (time.perf_counter() - start) / len(queries)
                answers[name] = hits
            row["equal"] = answers["local"] == answers["milvus"]
            row["hits_q0"] = len(answers["local"][0])
            rows.append(row)
            print(
                f"r={radius!s:>4} k={k!s:>6} filter={json.dumps(where):<28} hits(q0)="
                f"{row['hits_q0']:>6} local {row['local_ms']:8.1f} ms  milvus"
                f" {row['milvus_ms']:8.1f} ms  equal={row['equal']}"
            )
    result = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "n": args.n,
        "bits": BITS,
        "queries": args.queries,
        "machine": platform.platform(),
        "timing": {name: b["timing"] for name, b in backends.items()},
        "searches": rows,
        "all_equal": all(r["equal"] for r in rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"all equal: {result['all_equal']}; wrote {args.out}")
    sqlite.close()
    milvus.close()
    if not result["all_equal"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
