"""CPU time of one request through the whole app, in process: no sockets, no load generator.

    .venv/bin/python benchmarks/request_cost.py [--items 100000] [--profile]

The load test (`load.py`) measures what clients see, but on 2 cores its figures move with
whatever else runs; this one calls the ASGI app directly (the same middleware, routing,
validation, search and serialisation as under uvicorn) and counts the process's CPU time per
request, best of ``--reps`` passes, so one change can be compared with another in minutes.
Steps: the 20 Newsgroups model and collection of `load.py`, ``--items`` posts upserted through
the app, then search by raw code (k=10, the stored codes of 200 items) and by text (k=10, one
query at a time, so no micro-batching). ``--profile`` prints cProfile's top functions for the
code search. Writes benchmarks/results/request_cost.json.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results"
SEARCH = "/v1/collections/bench/search"


class InProcess:
    """Calls an ASGI app with one complete request body and collects the answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"bench"),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 80),
            "state": {},
        }
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return status, b"".join(chunks)

    async def cpu_per_request(self, bodies: list[bytes], n: int, reps: int) -> float:
        """Best over ``reps`` passes of ``n`` requests: process CPU seconds per request."""
        best = float("inf")
        for _ in range(reps):
            start = time.process_time()
            for i in range(n):
                status, answer = await self.post(SEARCH, bodies[i % len(bodies)])
                if status != 200:
                    raise RuntimeError(f"search answered {status}: {answer[:200]!r}")
            best = min(best, (time.process_time() - start) / n)
        return best


async def measure(args: argparse.Namespace, data_dir: Path, texts: list[str]) -> dict[str, Any]:
    os.environ["BITSEEK_DATA_DIR"] = str(data_dir)
    os.environ["BITSEEK_DEVICE"] = "cpu"
    from service.main import app_factory

    app = app_factory()
    client = InProcess(app)
    async with app.router.lifespan_context(app):
        for start in range(0, args.items, 500):
            items = [
                {"id": f"d{i}", "text": texts[i % len(texts)], "metadata": {"n": i % 20}}
                for i in range(start, min(start + 500, args.items))
            ]
            status, answer = await client.post(
                "/v1/collections/bench/items", json.dumps({"items": items}).encode()
            )
            if status != 200:
                raise RuntimeError(f"upsert answered {status}: {answer[:200]!r}")
        runtime = app.state.runtime
        _, serving = runtime.registry.serving("bench")
        step = max(1, args.items // 200)
        codes = []
        for i in range(0, args.items, step):
            row = runtime.store.get_item("bench", f"d{i}")
            codes.append(row.code_under(serving.version).hex())
        code_bodies = [json.dumps({"code": c, "k": 10}).encode() for c in codes]
        text_bodies = [json.dumps({"text": t[:1000], "k": 10}).encode() for t in texts[-200:]]
        for body in code_bodies + text_bodies:  # warm: compiled kernels, caches
            await client.post(SEARCH, body)
        rows = {
            "search by code, k=10": await client.cpu_per_request(code_bodies, 3000, args.reps),
            "search by text, k=10": await client.cpu_per_request(text_bodies, 300, args.reps),
        }
        if args.profile:
            profile = cProfile.Profile()
            profile.enable()
            for i in range(3000):
                await client.post(SEARCH, code_bodies[i % len(code_bodies)])
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(30)
    return {name: round(seconds * 1e6, 1) for name, seconds in rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5, help="passes; the best counts")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "request_cost.json"))
    args = parser.parse_args()
    import uvloop
    from load import build_data_dir, read_news

    texts = read_news()
    work = Path(tempfile.mkdtemp(prefix="bitseek-cost-"))
    try:
        build_data_dir(work / "data", texts)
        us = uvloop.run(measure(args, work / "data", texts))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'request':28} {'CPU us':>8}")
    for name, value in us.items():
        print(f"{name:28} {value:>8}")
    result = {
        "command": "python benchmarks/request_cost.py " + " ".join(sys.argv[1:]),
        "items": args.items,
        "load_average": os.getloadavg(),
        "cpu_us_per_request": us,
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
