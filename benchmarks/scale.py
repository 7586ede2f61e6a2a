"""Training at scale: `bitseek train` with the defaults on 100k- and 1M-item corpora built by
repeating the development suite's real documents (20 Newsgroups) and images (MNIST) under new ids.

Usage (from the repo root; see benchmarks/README.md, "Training that samples"):
  nice -n 10 .venv/bin/python benchmarks/scale.py --kind text image --sizes 100000 1000000 \
      [--bitseek .venv/bin/bitseek] [--scratch /tmp/bitseek-scale] [--name scale]

Each (kind, size) writes its corpus once under the scratch directory (JSON Lines for text, an .npz
for images), then runs `/usr/bin/time -v bitseek train --data D --bits 32 --out M --quiet` as a
user would (one torch thread, the CLI's default) and reads the wall time and peak RSS from it and
the stage times from the model's metrics. Results: benchmarks/results/scale_<name>.json, rewritten
after every run; the table is printed at the end.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATA = REPO.parent / "shared" / "data"
NEWSGROUPS = DATA / "text" / "20newsgroups"
MNIST = DATA / "images" / "mnist.npz"


def text_corpus(size: int, out: Path) -> Path:
    """20 Newsgroups' 18,846 posts repeated to ``size`` lines, each copy under new ids."""
    path = out / "train.jsonl"
    if path.exists():
        return out
    posts = []
    for split in ("train", "test"):
        with gzip.open(NEWSGROUPS / f"{split}.jsonl.gz", "rt", encoding="utf-8") as f:
            posts += [json.loads(line) for line in f]
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for i in range(size):
            post = posts[i % len(posts)]
            copy = {"id": f"{i // len(posts)}/{post['id']}", "text": post["text"],
                    "labels": post["labels"]}  # fmt: skip
            f.write(json.dumps(copy) + "\n")
    tmp.rename(path)
    return out


def image_corpus(size: int, out: Path) -> Path:
    """MNIST's 70,000 digits repeated to ``size`` images (an .npz with x_train and y_train)."""
    path = out / "mnist.npz"
    if path.exists():
        return path
    with np.load(MNIST) as d:
        x = np.concatenate([d["x_train"], d["x_test"]])
        y = np.concatenate([d["y_train"], d["y_test"]])
    take = np.arange(size) % len(x)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "mnist.tmp.npz"
    np.savez(tmp, x_train=x[take], y_train=y[take])
    tmp.rename(path)
    return path


def _time_v(stderr: str) -> tuple[float, float]:
    """(wall seconds, peak RSS GB) from `/usr/bin/time -v` output."""
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if wall is None or rss is None:
        raise RuntimeError(f"no /usr/bin/time -v figures in:\n{stderr[-2000:]}")
    h, m, s = wall.groups()
    return int(h or 0) * 3600 + int(m) * 60 + float(s), int(rss.group(1)) / 1e6


def run(bitseek: str, kind: str, size: int, scratch: Path, config: str) -> dict[str, Any]:
    where = scratch / f"{kind}-{size}"
    started = time.perf_counter()
    data = text_corpus(size, where) if kind == "text" else image_corpus(size, where)
    build_s = time.perf_counter() - started
    model = where / "model"
    argv = [bitseek, "train", "--data", str(data), "--bits", "32", "--out", str(model), "--quiet"]
    if config:
        argv += ["--config", config]
    done = subprocess.run(["/usr/bin/time", "-v", *argv], capture_output=True, text=True)
    (where / "train.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    wall, rss = _time_v(done.stderr)
    metrics = json.loads(next(model.glob("**/metrics.json")).read_text())
    return {
        "kind": kind, "items": size, "train_wall_s": round(wall, 1), "peak_rss_gb": round(rss, 2),
        "n_sampled": metrics.get("n_sampled"), "train_s": metrics.get("train_seconds"),
        "neighbour_s": metrics.get("neighbour_seconds"),
        "pretrain_s": metrics.get("pretrain", {}).get("seconds"),
        "finetune_s": metrics.get("finetune", {}).get("seconds"),
        "denoiser_s": (metrics.get("denoiser") or {}).get("seconds"),
        "corpus_build_s": round(build_s, 1),
        "command": " ".join(["/usr/bin/time", "-v", *argv]),
    }  # fmt: skip


STAGES = ("neighbour_s", "pretrain_s", "finetune_s", "denoiser_s")


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| corpus | items | sampled | train wall | peak RSS | k-NN / pretrain / fine-tune / "
             "denoiser s |", "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        stages = " / ".join(str(r[k]) for k in STAGES)
        wall, rss = r["train_wall_s"] / 60, r["peak_rss_gb"]
        head = f"| {r['kind']} | {r['items']:,} | {r['n_sampled']:,}"
        lines.append(f"{head} | {wall:.1f} min | {rss:.2f} GB | {stages} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", nargs="+", choices=("text", "image"), default=["text", "image"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    ap.add_argument("--bitseek", default=str(REPO / ".venv" / "bin" / "bitseek"))
    ap.add_argument("--scratch", type=Path, default=Path("/tmp/bitseek-scale"))
    ap.add_argument("--name", default="scale", help="results go to results/scale_NAME.json")
    ap.add_argument(
        "--config",
        default="",
        help="JSON file of training settings, passed to `bitseek train --config`",
    )
    args = ap.parse_args()
    out = RESULTS / f"scale_{args.name}.json"
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        for kind in args.kind:
            rows.append(run(args.bitseek, kind, size, args.scratch, args.config))
            rows[-1]["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
            out.write_text(json.dumps({"commit": commit, "argv": sys.argv, "rows": rows}, indent=1))
    print(table(rows))


if __name__ == "__main__":
    main()
