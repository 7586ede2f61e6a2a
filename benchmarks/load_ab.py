"""Code search under load through two source trees, alternately, over one data directory.

    .venv/bin/python benchmarks/load_ab.py BEFORE_TREE AFTER_TREE [--reps 3] [--name NAME]

On a 2-core machine a single `load.py` run moves by 20-40% with whatever else runs (its no-op
row has read 3,000 to 5,000 req/s on the same VM within an hour), so a before/after of the
request path is read from alternating runs instead: `load.py`'s model, 100,000 posts upserted
once, then per repetition each tree serves the same data directory with 1 and with 2 uvicorn
workers for 32 clients of raw-code k=10 searches (10 s after 2 s of warm-up), and the no-op
FastAPI endpoint gives that repetition's ceiling. A tree is a checkout (e.g. ``git worktree add
/tmp/before REV``); its server is started with it as the working directory, so it imports its
own ``service``. Writes benchmarks/results/load_ab_NAME.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import load
import numpy as np
from load import (
    SEARCH,
    UPSERT,
    build_data_dir,
    noop_load,
    read_news,
    request_bytes,
    run_load,
    run_upserts,
    start_server,
    stop_server,
)

ITEMS = 100_000


def _search_load(tree: Path, env: dict[str, str], workers: int, codes: list[str]) -> dict[str, Any]:
    factory = ["--factory", "service.main:app_factory", "--workers", str(workers)]
    proc, port = start_server(factory, env, cwd=tree)
    try:
        bodies = [json.dumps({"code": c, "k": 10}).encode() for c in codes]
        reqs = [request_bytes(port, SEARCH, body) for body in bodies]
        asyncio.run(run_load(port, reqs, 32, 2.0))  # warm-up
        return asyncio.run(run_load(port, reqs, 32, 10.0))
    finally:
        stop_server(proc)


def _fill(env: dict[str, str], texts: list[str]) -> list[str]:
    """Upsert the items through a server of this tree; the stored codes of 200 of them."""
    proc, port = start_server(["--factory", "service.main:app_factory"], env)
    try:
        bodies = []
        for start in range(0, ITEMS, 500):
            items = [
                {"id": f"d{i}", "text": texts[i % len(texts)], "metadata": {"n": i % 20}}
                for i in range(start, start + 500)
            ]
            bodies.append(json.dumps({"items": items}).encode())
        asyncio.run(run_upserts(port, bodies, 2))
        with httpx.Client() as http:
            picked = np.random.RandomState(0).choice(ITEMS, 200, replace=False)
            return [
                http.get(f"http://127.0.0.1:{port}{UPSERT}/d{i}").json()["code"] for i in picked
            ]
    finally:
        stop_server(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--name", default="ab")
    args = ap.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    work = Path(tempfile.mkdtemp(prefix="bitseek-load-ab-"))
    rows: list[dict[str, Any]] = []
    try:
        texts = read_news()
        build_data_dir(work / "data", texts)
        env = {"BITSEEK_DATA_DIR": str(work / "data"), "BITSEEK_DEVICE": "cpu"}
        codes = _fill(env, texts)
        for rep in range(args.reps):
            for name, tree in trees.items():
                for workers in (1, 2):
                    row = _search_load(tree, env, workers, codes)
                    rows.append({"rep": rep, "tree": name, "workers": workers, **row})
                    print(rep, name, f"{workers} worker(s)", row["rps"], row["p99_ms"], flush=True)
            rows.append({"rep": rep, "tree": "no-op", "workers": 1, **noop_load(work, 10.0)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'rep':>3} {'what':28} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    for r in rows:
        what = f"{r['tree']}, {r['workers']} worker(s)" if r["tree"] != "no-op" else "no-op"
        print(f"{r['rep']:>3} {what:28} {r['rps']:>8} {r['p50_ms']:>7} {r['p99_ms']:>7}")
    out = load.RESULTS / f"load_ab_{args.name}.json"
    command = "python benchmarks/load_ab.py " + " ".join(sys.argv[1:])
    out.write_text(
        json.dumps(
            {"command": command, "trees": {k: str(v) for k, v in trees.items()}, "rows": rows},
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
