"""HammingIndex vs FAISS binary indexes: queries/s, exactness, build/save/load, memory, scaling.

Every FAISS configuration answers the same queries in the same process and its result sets
are compared with ours (range: the exact (id, distance) set per query; k-NN: the exact distance
multiset and, below the k-th distance, the exact id set). Run once, niced, e.g.::

    nice -n 10 .venv/bin/python benchmarks/index_bench.py --n 1000000

Writes benchmarks/results/index_bench.json (with the command) and prints a table.
``--baseline REV`` also times ``service/index`` as of git revision REV in the same process
(before/after on one machine, in one run).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import platform
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.index import HammingIndex, SearchResult  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RANGE_SETTINGS = [(32, 2), (32, 3), (64, 2), (64, 3), (128, 4)]
KNN_SETTINGS = [(64, 10), (64, 100)]


# -- data ------------------------------------------------------------------------------------


def clustered_codes(
    n: int, bits: int, seed: int, spread: float, dim: int = 64, centre_spread: float = 1.0
) -> np.ndarray:
    """Signs of random projections of a 20-component Gaussian mixture (fixed centres).

    Centres have standard deviation ``centre_spread``, components ``spread``.
    """
    centres = np.random.default_rng(99).standard_normal((20, dim)).astype(np.float32)
    centres *= np.float32(centre_spread)
    proj = np.random.default_rng(1234 + bits).standard_normal((dim, bits)).astype(np.float32)
    rng = np.random.default_rng(seed)
    comp = rng.integers(0, 20, n)
    out = np.empty((n, bits // 8), np.uint8)
    for a in range(0, n, 250_000):
        b = min(n, a + 250_000)
        x = centres[comp[a:b]] + spread * rng.standard_normal((b - a, dim), dtype=np.float32)
        out[a:b] = np.packbits(x @ proj > 0, axis=1)
    return out


def uniform_codes(n: int, bits: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, bits // 8), dtype=np.uint8)


def make_data(
    kind: str, n: int, nq: int, bits: int, spread: float, centre_spread: float = 1.0
) -> tuple[np.ndarray, ...]:
    if kind == "clustered":
        return (
            clustered_codes(n, bits, 0, spread, centre_spread=centre_spread),
            clustered_codes(nq, bits, 1, spread, centre_spread=centre_spread),
        )
    return uniform_codes(n, bits, 0), uniform_codes(nq, bits, 1)


def baseline_index_class(rev: str) -> Any:
    """``HammingIndex`` as of git revision ``rev``, importable next to the current one.

    ``service/index`` at ``rev`` is unpacked into a temporary package whose imports of
    ``service.index`` are renamed, so both versions run in this process on the same data.
    """
    root = Path(__file__).resolve().parents[1]
    blob = subprocess.run(
        ["git", "-C", str(root), "archive", rev, "service/index"],
        check=True,
        capture_output=True,
    ).stdout
    tmp = Path(tempfile.mkdtemp(prefix="index_baseline_"))
    name = "index_baseline_" + "".join(c for c in rev if c.isalnum())
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.endswith(".py"):
                text = tar.extractfile(member).read().decode()  # type: ignore[union-attr]
                out = tmp / name / Path(member.name).name
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(text.replace("service.index", name))
    sys.path.insert(0, str(tmp))
    return importlib.import_module(name).HammingIndex


# -- result comparison -------------------------------------------------------------------------


def canonical(lims: np.ndarray, dist: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(query, distance, id) rows sorted: equal arrays <=> equal per-query result sets."""
    q = np.repeat(np.arange(len(lims) - 1), np.diff(lims).astype(np.int64))
    order = np.lexsort((ids, dist, q))
    return np.stack([q[order], dist[order].astype(np.int64), ids[order].astype(np.int64)])


def same_range(ours: SearchResult, lims: np.ndarray, dist: np.ndarray, ids: np.ndarray) -> bool:
    a = np.stack([np.repeat(np.arange(len(ours)), np.diff(ours.lims)), ours.distances, ours.ids])
    b = canonical(lims, dist, ids)
    return a.shape == b.shape and bool(np.array_equal(a, b))


def same_knn(ours: SearchResult, dist: np.ndarray, ids: np.ndarray, k: int) -> bool:
    """Exact k-NN: equal distance lists; ids equal wherever the distance is below the k-th."""
    od = ours.distances.reshape(-1, k)
    oi = ours.ids.reshape(-1, k)
    if not np.array_equal(od, np.sort(dist, axis=1)):
        return False
    kth = od[:, -1:]
    for i in range(len(od)):
        below = od[i] < kth[i]
        if set(oi[i][below]) != set(ids[i][dist[i] < kth[i]]):
            return False
    return True


# Query timings' clock: wall time, or with ``--clock cpu`` this thread's CPU time, which leaves
# out the time the process waits for a core on a shared machine. One-thread searches run on the
# calling thread (ours and FAISS's with one OpenMP thread), so both clocks time the same work.
CLOCK = {"wall": time.perf_counter, "cpu": time.thread_time}
clock = time.perf_counter


def timed(fn: Any, repeat: int = 2) -> tuple[float, Any]:
    """Best of ``repeat`` runs (the CPU is shared); a run over 2 s is not repeated."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t = clock()
        out = fn()
        best = min(best, clock() - t)
        if best > 2.0:
            break
    return best, out


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- FAISS configurations --------------------------------------------------------------------


def faiss_configs(bits: int, r: int) -> list[tuple[str, Any]]:
    """Exact range configurations: Hash keys <= 32 bits with nflip >= r, MultiHash with
    nflip >= r // nhash (both inclusive), plus the flat scan."""
    out: list[tuple[str, Any]] = []
    for b in (16, 20, 24, 32):
        if b <= bits:
            out.append((f"Hash b={b} nflip={min(r, b)}", ("hash", b, min(r, b))))
    for nhash, b in ((2, 16), (2, 32), (3, 21), (4, 16), (4, 32), (5, 25), (8, 16)):
        if nhash * b <= bits and nhash > 1:
            out.append(
                (f"MultiHash {nhash}x{b} nflip={r // nhash}", ("multi", nhash, b, r // nhash))
            )
    return out


class FaissZoo:
    """Builds FAISS indexes lazily and keeps them for every radius of one dataset."""

    def __init__(self, xb: np.ndarray, bits: int) -> None:
        self.xb, self.bits = xb, bits
        self.built: dict[tuple[Any, ...], tuple[Any, float, int]] = {}

    def get(self, key: tuple[Any, ...]) -> tuple[Any, float, int]:
        base = key[:-1] if key[0] in ("hash", "multi") else key
        if base not in self.built:
            before = rss()
            t = time.perf_counter()
            if key[0] == "flat":
                index = faiss.IndexBinaryFlat(self.bits)
            elif key[0] == "hash":
                index = faiss.IndexBinaryHash(self.bits, key[1])
            else:
                index = faiss.IndexBinaryMultiHash(self.bits, key[1], key[2])
            index.add(self.xb)
            self.built[base] = (index, time.perf_counter() - t, rss() - before)
        index, build_s, mem = self.built[base]
        if key[0] in ("hash", "multi"):
            index.nflip = key[-1]
        return index, build_s, mem


# -- benchmark -------------------------------------------------------------------------------


def time_bitseek(
    row: dict[str, Any], method: str, index: Any, verb: str, arg: int, xq: np.ndarray,
    threads: list[int], **options: bool,
) -> SearchResult:  # fmt: skip
    """Time ``index.<verb>(queries, arg, threads=..., **options)`` (warmed first) into ``row``."""
    search = getattr(index, verb)
    search(xq[:8], arg, **options)  # warm: numba code and the cached strategy choice
    for th in threads:
        sec, res = timed(lambda th=th: search(xq, arg, threads=th, **options), repeat=3)
        row["methods"].append({"method": method, "threads": th, "qps": len(xq) / sec})
    return res


UNSORTED = "bitseek, unsorted"


def time_versions(
    row: dict[str, Any], ours: HammingIndex, baseline: tuple[str, Any] | None, verb: str,
    arg: int, xq: np.ndarray, threads: list[int],
) -> SearchResult:  # fmt: skip
    """Time our index and, when there is one, the baseline revision's; check they agree."""
    res = time_bitseek(row, "bitseek", ours, verb, arg, xq, threads)
    if baseline is not None:
        old = time_bitseek(row, f"bitseek@{baseline[0]}", baseline[1], verb, arg, xq, threads)
        same = all(
            np.array_equal(a, b)
            for a, b in ((old.lims, res.lims), (old.ids, res.ids), (old.distances, res.distances))
        )
        for m in row["methods"][-len(threads) :]:
            m["exact"] = same
    return res


def bench_range(
    ours: HammingIndex, zoo: FaissZoo, xq: np.ndarray, r: int, threads: list[int], sweep: bool,
    baseline: tuple[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    row: dict[str, Any] = {"radius": r, "methods": []}
    res = time_versions(row, ours, baseline, "search_radius", r, xq, threads)
    # What the service asks for: it ranks the hits itself, so the index need not sort them.
    # FAISS's range search sorts nothing either.
    unsorted = time_bitseek(row, UNSORTED, ours, "search_radius", r, xq, threads, ordered=False)
    same = same_range(res, unsorted.lims, unsorted.distances, unsorted.ids)
    for m in row["methods"][-len(threads) :]:
        m["exact"] = same
    row["hits_per_query"] = len(res.ids) / len(xq)
    st = res.stats
    row["bitseek_stats"] = {
        "strategy": st.strategy,
        "tables": st.tables,
        "table_radii": list(st.table_radii),
        "probes_per_query": st.probes / st.queries,
        "candidates_per_query": st.candidates / st.queries,
    }
    configs = [("Flat range_search", ("flat",))]
    configs += faiss_configs(zoo.bits, r) if sweep else []
    for name, key in configs:
        index, build_s, mem = zoo.get(key)
        for th in threads:
            faiss.omp_set_num_threads(th)
            faiss.cvar.indexBinaryHash_stats.reset()
            sec, (lims, dist, ids) = timed(lambda index=index: index.range_search(xq, r + 1))
            entry = {
                "method": name,
                "threads": th,
                "qps": len(xq) / sec,
                "exact": same_range(res, lims, dist, ids),
                "build_s": build_s,
                "rss_bytes_per_item": mem / len(zoo.xb),
            }
            if key[0] != "flat" and th == threads[0]:
                s = faiss.cvar.indexBinaryHash_stats
                entry["probes_per_query"] = s.nlist / max(1, s.nq)
                entry["candidates_per_query"] = s.ndis / max(1, s.nq)
            row["methods"].append(entry)
    return row


def bench_knn(
    ours: HammingIndex, zoo: FaissZoo, xq: np.ndarray, k: int, threads: list[int], sweep: bool,
    baseline: tuple[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    row: dict[str, Any] = {"k": k, "methods": []}
    res = time_versions(row, ours, baseline, "search_knn", k, xq, threads)
    st = res.stats
    row["bitseek_stats"] = {
        "strategy": st.strategy,
        "scanned_queries": st.scanned_queries,
        "probes_per_query": st.probes / st.queries,
        "candidates_per_query": st.candidates / st.queries,
        "max_kth_distance": int(res.distances.max()) if res.distances.size else 0,
    }
    configs = [("Flat search", ("flat",))]
    if sweep:
        configs += [(f"MultiHash 2x32 nflip={f}", ("multi", 2, 32, f)) for f in (1, 2)]
    for name, key in configs:
        if key[0] == "multi" and 2 * 32 > zoo.bits:
            continue
        index, build_s, _ = zoo.get(key)
        for th in threads:
            faiss.omp_set_num_threads(th)
            sec, (dist, ids) = timed(lambda index=index: index.search(xq, k))
            row["methods"].append(
                {
                    "method": name,
                    "threads": th,
                    "qps": len(xq) / sec,
                    "exact": same_knn(res, dist, ids, k),
                    "build_s": build_s,
                }
            )
    return row


def build_baseline(baseline: tuple[str, Any] | None, xb: np.ndarray, bits: int) -> Any:
    """The baseline revision's index over ``xb`` (its class in, an index out), or None."""
    if baseline is None:
        return None
    index = baseline[1](bits)
    index.add(np.arange(len(xb), dtype=np.int64), xb)
    return (baseline[0], index)


def build_ours(xb: np.ndarray, bits: int) -> tuple[HammingIndex, dict[str, Any]]:
    before = rss()
    index = HammingIndex(bits)
    build_s, _ = timed(lambda: index.add(np.arange(len(xb), dtype=np.int64), xb), repeat=1)
    info: dict[str, Any] = {
        "build_s": build_s,
        "bytes_per_item": index.nbytes() / len(xb),
        "rss_bytes_per_item": (rss() - before) / len(xb),
        "groups": list(index.groups),
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "index.bin"
        info["save_s"], _ = timed(lambda: index.save(path), repeat=1)
        info["file_bytes_per_item"] = path.stat().st_size / len(xb)
        info["load_s"], loaded = timed(lambda: HammingIndex.load(path, bits), repeat=1)
        probe = xb[:50]
        a, b = index.search_radius(probe, 2), loaded.search_radius(probe, 2)
        info["load_roundtrip_equal"] = bool(
            np.array_equal(a.ids, b.ids) and np.array_equal(a.lims, b.lims)
        )
    return index, info


def best_faiss(methods: list[dict[str, Any]], th: int) -> dict[str, Any] | None:
    pool = [
        m
        for m in methods
        if not m["method"].startswith("bitseek") and m["threads"] == th and m["exact"]
    ]
    return max(pool, key=lambda m: m["qps"]) if pool else None


def ratio_table(rows: list[dict[str, Any]], threads: list[int]) -> list[str]:
    lines = []
    for row in rows:
        label = f"{row['data']:9s} {row['bits']:3d}b " + (
            f"r={row['radius']}" if "radius" in row else f"k={row['k']}"
        )
        for th in threads:
            ours = next(
                m for m in row["methods"] if m["method"] == "bitseek" and m["threads"] == th
            )
            best = best_faiss(row["methods"], th)
            inexact = [m["method"] for m in row["methods"] if m.get("exact") is False]
            bq = best["qps"] if best else float("nan")
            before = [
                f"{m['method']} {m['qps']:>9,.0f} q/s | "
                for m in row["methods"]
                if m["method"].startswith("bitseek@") and m["threads"] == th
            ]
            unsorted = [m for m in row["methods"] if m["method"] == UNSORTED and m["threads"] == th]
            hits = f"{row['hits_per_query']:8,.1f} hits/q | " if "hits_per_query" in row else ""
            lines.append(
                f"{label:24s} th={th} {hits}{''.join(before)}"
                f"bitseek {ours['qps']:>10,.0f} q/s | best exact FAISS "
                f"{bq:>10,.0f} ({best['method'] if best else '-'}) | x{ours['qps'] / bq:5.2f}"
                + "".join(
                    f" | unsorted {m['qps']:>10,.0f} q/s x{m['qps'] / bq:5.2f}" for m in unsorted
                )
                + (f" | inexact: {', '.join(sorted(set(inexact)))}" if inexact else "")
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="database items (issue: 1,000,000)")
    ap.add_argument("--nq", type=int, default=1000, help="queries per batch")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--data", default="clustered,uniform")
    ap.add_argument("--spread", type=float, default=0.5, help="mixture component std")
    ap.add_argument(
        "--centre-spread",
        type=float,
        default=1.0,
        help="std of the mixture's centres (learned-code-like: --centre-spread 3 --spread 1)",
    )
    ap.add_argument(
        "--range",
        default=",".join(f"{b}:{r}" for b, r in RANGE_SETTINGS),
        help="bits:radius settings for the range table",
    )
    ap.add_argument(
        "--knn",
        default=",".join(f"{b}:{k}" for b, k in KNN_SETTINGS),
        help="bits:k settings for the k-NN table ('' for none)",
    )
    ap.add_argument("--baseline", default="", help="also time service/index at this git revision")
    ap.add_argument(
        "--scaling", default="", help="64-bit sizes for the scaling study, e.g. 1e5,1e6"
    )
    ap.add_argument("--radii", default="0,1,2,3,4,5", help="64-bit radii for the radius study")
    ap.add_argument("--no-sweep", action="store_true", help="FAISS flat only (quick check)")
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCK),
        default="wall",
        help="query timings in wall time or this thread's CPU time (one thread only)",
    )
    ap.add_argument("--out", default=str(RESULTS / "index_bench.json"))
    args = ap.parse_args(argv)
    global clock
    clock = CLOCK[args.clock]
    if args.clock == "cpu" and args.threads != "1":
        ap.error("--clock cpu times the calling thread: use it with --threads 1")
    threads = [int(t) for t in args.threads.split(",")]
    sweep = not args.no_sweep
    range_settings = [tuple(int(x) for x in p.split(":")) for p in args.range.split(",") if p]
    knn_settings = [tuple(int(x) for x in p.split(":")) for p in args.knn.split(",") if p]
    baseline_class = baseline_index_class(args.baseline) if args.baseline else None
    report: dict[str, Any] = {
        "command": "nice -n 10 .venv/bin/python benchmarks/index_bench.py "
        + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])),
        "n": args.n,
        "nq": args.nq,
        "spread": args.spread,
        "centre_spread": args.centre_spread,
        "baseline": args.baseline or None,
        "clock": args.clock,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "faiss": faiss.__version__,
        "build": [],
        "range": [],
        "knn": [],
        "radius_growth": [],
        "scaling": [],
    }
    for kind in args.data.split(","):
        for bits in sorted({b for b, _ in range_settings} | {b for b, _ in knn_settings}):
            xb, xq = make_data(kind, args.n, args.nq, bits, args.spread, args.centre_spread)
            ours, info = build_ours(xb, bits)
            cls = baseline_class
            baseline = build_baseline((args.baseline, cls) if cls else None, xb, bits)
            info.update(data=kind, bits=bits)
            report["build"].append(info)
            print(
                f"[{kind} {bits}b] build {info['build_s']:.2f}s, "
                f"{info['bytes_per_item']:.1f} B/item"
            )
            zoo = FaissZoo(xb, bits)
            for b, r in range_settings:
                if b == bits:
                    row = bench_range(ours, zoo, xq, r, threads, sweep, baseline)
                    report["range"].append({"data": kind, "bits": bits, **row})
            for b, k in knn_settings:
                if b == bits:
                    row = bench_knn(ours, zoo, xq, k, threads, sweep, baseline)
                    report["knn"].append({"data": kind, "bits": bits, **row})
            if kind == "clustered" and bits == 64 and args.radii:
                for r in (int(x) for x in args.radii.split(",")):
                    ours.search_radius(xq[:8], r)
                    sec, res = timed(lambda r=r, o=ours, q=xq: o.search_radius(q, r))
                    report["radius_growth"].append(
                        {
                            "radius": r,
                            "qps": len(xq) / sec,
                            "us_per_query": sec / len(xq) * 1e6,
                            "hits_per_query": len(res.ids) / len(xq),
                            "strategy": res.stats.strategy,
                            "candidates_per_query": res.stats.candidates / len(xq),
                        }
                    )
            del zoo, ours, baseline
    for n in (int(float(x)) for x in args.scaling.split(",") if x):
        xb, xq = make_data("clustered", n, args.nq, 64, args.spread, args.centre_spread)
        ours, info = build_ours(xb, 64)
        zoo = FaissZoo(xb, 64)
        for r in (2, 3):
            ours.search_radius(xq[:8], r)
            sec, res = timed(lambda r=r, o=ours, q=xq: o.search_radius(q, r))
            index, _, _ = zoo.get(("multi", 2, 32, r // 2))
            faiss.omp_set_num_threads(1)
            fsec, (lims, dist, ids) = timed(
                lambda index=index, q=xq, r=r: index.range_search(q, r + 1)
            )
            report["scaling"].append(
                {
                    "n": n,
                    "radius": r,
                    "bitseek_qps": len(xq) / sec,
                    "faiss_multihash_2x32_qps": len(xq) / fsec,
                    "exact": same_range(res, lims, dist, ids),
                    "hits_per_query": len(res.ids) / len(xq),
                    "build_s": info["build_s"],
                    "bytes_per_item": info["bytes_per_item"],
                }
            )
        del zoo, ours
    lines = ratio_table(report["range"] + report["knn"], threads)
    report["summary"] = lines
    print("\n".join(lines))
    for b in report["build"]:
        print(
            f"build {b['data']:9s} {b['bits']:3d}b: {b['build_s']:.2f}s  save {b['save_s']:.2f}s  "
            f"load {b['load_s']:.2f}s  {b['bytes_per_item']:.1f} B/item"
        )
    for g in report["radius_growth"]:
        print(
            f"64b clustered r={g['radius']}: {g['qps']:,.0f} q/s, {g['hits_per_query']:.1f} hits/q"
        )
    for s in report["scaling"]:
        print(
            f"scaling n={s['n']:>9,d} r={s['radius']}: bitseek {s['bitseek_qps']:,.0f} q/s, "
            f"FAISS MultiHash 2x32 {s['faiss_multihash_2x32_qps']:,.0f} q/s, exact={s['exact']}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
