"""Load test of the HTTP service on loopback, beside a no-op FastAPI endpoint (the ceiling).

    nice -n 10 .venv/bin/python benchmarks/load.py [--items 100000] [--duration 10]

Steps: train a 32-bit text model on 20 Newsgroups (../shared/data; small settings: throughput,
not quality, is measured here), install it in a fresh data dir, start the real server
(uvicorn, one process, exactly as `bitseek serve`), then
1. batch-upsert ``--items`` text items (20 Newsgroups posts, repeated with new ids), 500 a request;
2. search by raw code (k=10) at 32 concurrent clients;
3. search by text (k=10) at 1, 4, 16 and 32 clients (micro-batching: throughput should grow);
4. the same text load with micro-batching off (BITSEEK_BATCH_MAX_SIZE=1), for comparison;
5. a no-op FastAPI POST endpoint under uvicorn, at 32 clients: the framework's ceiling here;
6. code and text search again with ``--workers`` server processes (uvicorn's workers, as
   `bitseek serve --workers N`) over the same data directory;
7. two servers over the data directory: for ``--visibility`` writes through one, the delay
   from the acknowledgement until a search through the other finds the item.
The load generator is one asyncio process speaking HTTP/1.1 keep-alive over raw sockets (cheaper
than any client library, so it steals as little CPU as possible from the server on 2 cores).
Prints a table; writes benchmarks/results/load_<items>.json with the command and the machine load.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "text" / "20newsgroups"
RESULTS = ROOT / "benchmarks" / "results"
MODEL_CACHE = Path(tempfile.gettempdir()) / "bitseek-load-model-v1"
MODEL_SETTINGS = {
    "bits": 32,
    "hidden_dims": [256],
    "vocab_size": 5000,
    "pretrain": "none",
    "epochs": 2,
    "neighbours": 0,
}
NOOP_APP = """
from fastapi import FastAPI, Request
app = FastAPI()
@app.post("/noop")
async def noop(request: Request) -> dict:
    await request.body()
    return {}
"""


def read_news() -> list[str]:
    """Posts with some text, cut to 20,000 characters (a few are huge uuencoded files; the
    service rejects empty texts, and one bad item rejects its whole batch)."""
    texts = []
    for name in ("train.jsonl.gz", "test.jsonl.gz"):
        with gzip.open(DATA / name, "rt") as f:
            texts += [json.loads(line)["text"][:20_000] for line in f]
    return [t for t in texts if t.strip()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_data_dir(data_dir: Path, texts: list[str]) -> dict[str, Any]:
    """Train the model and create an empty collection `bench` that serves it."""
    from service.backend import TrainingBackend
    from service.config import InputLimits
    from service.registry import Registry
    from service.sqlite_store import SqliteStore
    from training.config import TrainConfig
    from training.data import Dataset, Split
    from training.train import train

    train_texts = texts[:11314]
    ids = [f"n{i}" for i in range(len(train_texts))]
    start = time.perf_counter()
    if MODEL_CACHE.exists():  # a rerun measures the service, not the training again
        model = TrainingBackend().load(MODEL_CACHE, "cpu")
    else:
        dataset = Dataset("text", Split(train_texts, ids, None), None, [], "20newsgroups")
        model = train(dataset, TrainConfig.from_dict(MODEL_SETTINGS))
        model.save(MODEL_CACHE)
    took = time.perf_counter() - start
    store = SqliteStore(data_dir / "bitseek.sqlite3")
    registry = Registry(store, TrainingBackend(), data_dir, "cpu", InputLimits())
    registry.create("bench", "text", {"bits": 32})
    registry.install_model("bench", model)
    store.close()
    return {"model_seconds": round(took, 1), "train_items": len(train_texts)}


def noop_load(work: Path, duration: float) -> dict[str, Any]:
    """32 clients on a bare FastAPI endpoint under the same uvicorn: the framework's ceiling."""
    (work / "noop_app.py").write_text(NOOP_APP)
    proc, port = start_server(["--app-dir", str(work), "noop_app:app"], {})
    try:
        reqs = [request_bytes(port, "/noop", json.dumps({"code": "ab12cd34", "k": 10}).encode())]
        asyncio.run(run_load(port, reqs, 32, 2.0))
        return asyncio.run(run_load(port, reqs, 32, duration))
    finally:
        stop_server(proc)


def start_server(
    app_args: list[str], env: dict[str, str], cwd: Path = ROOT
) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn serving ``app_args`` from ``cwd`` (a checkout: its own ``service`` is imported)."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", *app_args, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                time.sleep(0.5)
                return proc, port
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


# -- the load generator -------------------------------------------------------------------------
def request_bytes(port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def one_call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, req: bytes) -> int:
    writer.write(req)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


async def run_load(
    port: int, requests: list[bytes], clients: int, duration: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def client(seed: int) -> None:
        nonlocal errors
        rng = random.Random(seed)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop_at:
            req = requests[rng.randrange(len(requests))]
            t0 = time.perf_counter()
            status = await one_call(reader, writer, req)
            latencies.append(time.perf_counter() - t0)
            errors += status != 200
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    took = time.perf_counter() - start
    lat = np.asarray(latencies) * 1000.0
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": errors,
        "rps": round(len(latencies) / took, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }


async def run_upserts(port: int, bodies: list[bytes], clients: int) -> dict[str, Any]:
    queue = list(range(len(bodies)))
    errors = 0

    async def client() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            i = queue.pop()
            status = await one_call(reader, writer, request_bytes(port, UPSERT, bodies[i]))
            errors += status != 200
        writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return {"seconds": time.perf_counter() - start, "errors": errors}


UPSERT = "/v1/collections/bench/items"
SEARCH = "/v1/collections/bench/search"


def retarget(request: bytes, port: int) -> bytes:
    """The same request for a server on another port."""
    head, body = request.split(b"\r\n\r\n", 1)
    lines = [
        f"Host: 127.0.0.1:{port}".encode() if line.startswith(b"Host:") else line
        for line in head.split(b"\r\n")
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def visibility(
    factory: list[str], env: dict[str, str], texts: list[str], writes: int
) -> dict[str, Any]:
    """Delays from a write's acknowledgement by one server until another finds it."""
    import httpx

    one, port_one = start_server(factory, env)
    two, port_two = start_server(factory, env)
    delays = []
    try:
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port_one}") as a,
            httpx.Client(base_url=f"http://127.0.0.1:{port_two}") as b,
        ):
            for i in range(writes):
                text = texts[i % len(texts)][:2000]
                item = {"id": f"vis{i}", "text": text, "metadata": {"vis": i}}
                a.post(UPSERT, json={"items": [item]}).raise_for_status()
                acked = time.perf_counter()
                query = {"text": text, "max_distance": 0, "filter": {"vis": i}}
                while not b.post(SEARCH, json=query).json()["hits"]:
                    if time.perf_counter() - acked > 10:
                        raise RuntimeError(f"write {i} not visible after 10 s")
                delays.append((time.perf_counter() - acked) * 1000.0)
                time.sleep(0.02)  # writes spread out, as from users, not one burst
    finally:
        stop_server(one)
        stop_server(two)
    lat = np.asarray(delays)
    return {
        "writes": writes,
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p90_ms": round(float(np.percentile(lat, 90)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "max_ms": round(float(lat.max()), 1),
    }


def scrape_batches(port: int) -> tuple[float, float]:
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    values = {}
    for line in text.splitlines():
        if line.startswith("bitseek_encode_batch_size_"):
            name, value = line.split(" ")
            values[name] = float(value)
    return values.get("bitseek_encode_batch_size_sum", 0.0), values.get(
        "bitseek_encode_batch_size_count", 0.0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load phase")
    parser.add_argument("--upsert-clients", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="server processes in phase 6")
    parser.add_argument("--visibility", type=int, default=200, help="writes timed in phase 7")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    texts = read_news()
    work = Path(tempfile.mkdtemp(prefix="bitseek-load-"))
    data_dir = work / "data"
    results: dict[str, Any] = {
        "command": "nice -n 10 .venv/bin/python benchmarks/load.py " + " ".join(sys.argv[1:]),
        "items": args.items,
        "duration_s": args.duration,
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "model": MODEL_SETTINGS,
    }
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        print("training the 32-bit text model ...", flush=True)
        results["training"] = build_data_dir(data_dir, texts)
        env = {"BITSEEK_DATA_DIR": str(data_dir), "BITSEEK_DEVICE": "cpu"}
        factory = ["--factory", "service.main:app_factory"]
        proc, port = start_server(factory, env)
        try:
            # 1. upsert
            per_request = 500
            bodies = []
            for start in range(0, args.items, per_request):
                n = min(per_request, args.items - start)
                items = [
                    {"id": f"d{start + i}", "text": texts[(start + i) % len(texts)],
                     "metadata": {"n": (start + i) % 20}}
                    for i in range(n)
                ]  # fmt: skip
                bodies.append(json.dumps({"items": items}).encode())
            up = asyncio.run(run_upserts(port, bodies, args.upsert_clients))
            results["upsert"] = {
                "items_per_s": round(args.items / up["seconds"], 1),
                "seconds": round(up["seconds"], 1),
                "per_request": per_request,
                "clients": args.upsert_clients,
                "errors": up["errors"],
            }
            print(f"upsert: {results['upsert']}", flush=True)
            # 2. raw code
            import httpx

            rng = np.random.RandomState(0)
            codes = []
            with httpx.Client() as http:
                for i in rng.choice(args.items, 200, replace=False):
                    r = http.get(f"http://127.0.0.1:{port}{UPSERT}/d{i}").json()
                    codes.append(r["code"])
            code_reqs = [
                request_bytes(port, SEARCH, json.dumps({"code": c, "k": 10}).encode())
                for c in codes
            ]
            asyncio.run(run_load(port, code_reqs, 32, 2.0))  # warm-up
            rows.append(
                ("search by code, k=10", asyncio.run(run_load(port, code_reqs, 32, args.duration)))
            )
            print(rows[-1], flush=True)
            # 3. text at growing concurrency
            queries = [t[:1000] for t in texts[11314 : 11314 + 500]]
            text_reqs = [
                request_bytes(port, SEARCH, json.dumps({"text": q, "k": 10}).encode())
                for q in queries
            ]
            asyncio.run(run_load(port, text_reqs, 8, 2.0))
            for clients in (1, 4, 16, 32):
                before = scrape_batches(port)
                row = asyncio.run(run_load(port, text_reqs, clients, args.duration))
                after = scrape_batches(port)
                calls = after[1] - before[1]
                row["mean_batch"] = round((after[0] - before[0]) / calls, 2) if calls else None
                rows.append(("search by text, k=10 (batching on)", row))
                print(rows[-1], flush=True)
        finally:
            stop_server(proc)
        # 4. text without micro-batching
        proc, port = start_server(factory, {**env, "BITSEEK_BATCH_MAX_SIZE": "1"})
        try:
            text_reqs = [
                request_bytes(port, SEARCH, json.dumps({"text": q, "k": 10}).encode())
                for q in queries
            ]
            asyncio.run(run_load(port, text_reqs, 8, 2.0))
            row = asyncio.run(run_load(port, text_reqs, 32, args.duration))
            rows.append(("search by text, k=10 (batching off)", row))
            print(rows[-1], flush=True)
        finally:
            stop_server(proc)
        # 5. the framework's ceiling
        rows.append(("no-op FastAPI endpoint", noop_load(work, args.duration)))
        print(rows[-1], flush=True)
        # 6. several server processes
        proc, port = start_server([*factory, "--workers", str(args.workers)], env)
        try:
            for name, reqs in (("code", code_reqs), ("text", text_reqs)):
                reqs = [retarget(r, port) for r in reqs]
                asyncio.run(run_load(port, reqs, 32, 2.0))
                row = asyncio.run(run_load(port, reqs, 32, args.duration))
                rows.append((f"search by {name}, k=10 ({args.workers} workers)", row))
                print(rows[-1], flush=True)
        finally:
            stop_server(proc)
        # 7. a write through one server, found through another
        results["visibility"] = visibility(factory, env, texts, args.visibility)
        print(f"visibility: {results['visibility']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load"] = [{"what": name, **row} for name, row in rows]
    results["load_average_after"] = os.getloadavg()
    print()
    print(f"{'what':40} {'clients':>7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}")
    for name, row in rows:
        batch = row.get("mean_batch") or ""
        print(
            f"{name:40} {row['clients']:>7} {row['rps']:>9} {row['p50_ms']:>8} {row['p99_ms']:>8}"
            f" {batch:>6}"
        )
    up = results["upsert"]
    print(f"batch upsert: {up['items_per_s']} items/s ({args.items} items, 500 a request)")
    vis = results["visibility"]
    print(
        f"a write through one server found through another after: p50 {vis['p50_ms']} ms,"
        f" p90 {vis['p90_ms']} ms, p99 {vis['p99_ms']} ms, max {vis['max_ms']} ms"
        f" ({vis['writes']} writes)"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"load_{args.items}.json"
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
