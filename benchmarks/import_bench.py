"""Bulk import throughput: `bitseek import` of text items, encoded by the service or with codes
computed elsewhere, against a running server (HTTP, streamed NDJSON) and offline (the data
directory straight).

Usage (from the repo root; see benchmarks/README.md, "Bulk import"):
  .venv/bin/python benchmarks/import_bench.py --items 200000 [--batch 2000] \
      [--scratch /tmp/bitseek-import] [--name import]

A fresh data directory gets the demo collections (`bitseek demo`: a real 32-bit text model);
20 Newsgroups' posts repeated under new ids make the items. Each run imports the same number of
items into `demo-text` with the real CLI and reads the wall time from outside: text only (parse,
encode, store, index), then the same texts with random codes and the serving `model_version`
(parse, check, store, index). Each run's start-up (a one-item import of the same kind) is
reported beside it, and the offline runs have the data directory to themselves (the server is
stopped first). Results: benchmarks/results/import_<name>.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
NEWSGROUPS = REPO.parent / "shared" / "data" / "text" / "20newsgroups"
COLLECTION = "demo-text"


def write_items(path: Path, n: int, codes: tuple[int, int] | None, seed: int) -> None:
    """``n`` posts under fresh ids; with ``codes`` = (bits, version), random codes of that width
    computed "elsewhere" by that model version."""
    with gzip.open(NEWSGROUPS / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        posts = [json.loads(line)["text"] for line in f]
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            item: dict[str, Any] = {"id": f"{path.stem}/{i}", "text": posts[i % len(posts)]}
            if codes is not None:
                bits, version = codes
                item["code"] = rng.bytes(bits // 8).hex()
                item["model_version"] = version
            out.write(json.dumps(item) + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def timed(argv: list[str], env: dict[str, str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("ab") as out:
        subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def import_rows(
    args: argparse.Namespace, where: str, target: list[str], model: tuple[int, int],
    env: dict[str, str], log: Path,
) -> list[dict[str, Any]]:  # fmt: skip
    """Text, then codes given, through ``target``. Each kind is also imported as one item first,
    under other ids: that run's wall time is the command's start-up (interpreter, imports, the
    collection opened), reported apart so a short run's rate is read both ways."""
    rows = []
    for kind, codes in (("text", None), ("codes given", model)):
        name = f"{where}-{kind.replace(' ', '_')}"
        argv = [args.bitseek, "import", "--collection", COLLECTION, "--batch", str(args.batch)]
        write_items(args.scratch / f"{name}-one.jsonl", 1, codes, seed=len(rows) + 100)
        startup = timed([*argv, str(args.scratch / f"{name}-one.jsonl"), *target], env, log)
        path = args.scratch / f"{name}.jsonl"
        write_items(path, args.items, codes, seed=len(rows))
        seconds = timed([*argv, str(path), *target], env, log)
        # a run no longer than its start-up (a short one on a loaded machine) has no rate after it
        after = round(args.items / (seconds - startup)) if seconds > startup else None
        rows.append({"path": where, "items": kind, "n": args.items, "seconds": round(seconds, 2),
                     "startup_seconds": round(startup, 2),
                     "items_per_second": round(args.items / seconds),
                     "items_per_second_after_startup": after})  # fmt: skip
        print(f"{where:8s} {kind:12s} {args.items:>9,} items {seconds:7.1f} s "
              f"{args.items / seconds:>9,.0f} items/s, start-up {startup:.1f} s, "
              f"{'-' if after is None else f'{after:,}'} items/s after it", flush=True)  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=2000, help="items per transaction")
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/bitseek-import"))
    ap.add_argument("--name", default="import")
    ap.add_argument("--bitseek", default=str(REPO / ".venv" / "bin" / "bitseek"))
    args = ap.parse_args()
    shutil.rmtree(args.scratch, ignore_errors=True)
    data = args.scratch / "data"
    data.mkdir(parents=True)
    log = args.scratch / "log.txt"
    port = free_port()
    env = {**os.environ, "BITSEEK_DATA_DIR": str(data), "BITSEEK_PORT": str(port),
           "BITSEEK_LOG_LEVEL": "warning"}  # fmt: skip
    timed([args.bitseek, "demo"], env, log)
    server = subprocess.Popen([args.bitseek, "serve"], env=env, stdout=log.open("ab"),
                              stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    rows: list[dict[str, Any]] = []
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        info = httpx.get(f"{url}/v1/collections/{COLLECTION}").json()
        bits, version = int(info["bits"]), int(info["active_version"])
        rows += import_rows(args, "http", ["--url", url], (bits, version), env, log)
    finally:
        server.terminate()
        server.wait(timeout=60)
    # offline with no server on the data directory: a running one would replay every write
    rows += import_rows(args, "offline", ["--data-dir", str(data)], (bits, version), env, log)
    report = {
        "command": " ".join([sys.executable, *sys.argv]),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "batch": args.batch,
        "rows": rows,
    }
    out = RESULTS / f"import_{args.name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
