"""Exact against approximate k-NN search on the features the training k-NN graph reads: seconds of
each and the recall@k of the approximate lists (the measurement behind `exact_knn_rows`).

Usage (from the repo root; see benchmarks/README.md, "Training that samples"):
  nice -n 10 .venv/bin/python benchmarks/knn_bench.py --kind text [--rows 11314]
  nice -n 10 .venv/bin/python benchmarks/knn_bench.py --kind image --rows 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.data import load_dataset  # noqa: E402
from training.features import TextFeaturizer, fit_featurizer  # noqa: E402
from training.neighbours import approximate_neighbours, nearest_neighbours  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=("text", "image"), required=True)
    ap.add_argument("--rows", type=int, default=0, help="first ROWS training items (0: all)")
    ap.add_argument("-k", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.kind == "text":  # the rich tf-idf of `training.neighbours.neighbour_lists`
        texts = [str(t) for t in load_dataset(DATA / "text" / "20newsgroups").train.items]
        texts = texts[: args.rows or None]
        rich = TextFeaturizer.fit(texts, vocab_size=200000)
        x = rich.inputs_from_targets(rich.counts(texts))
    else:
        images = load_dataset(DATA / "images" / "mnist.npz").train.items[: args.rows or None]
        featurizer = fit_featurizer("image", images, 10000)
        x = featurizer.inputs_from_targets(featurizer.targets(images))
    started = time.perf_counter()
    exact = nearest_neighbours(x, args.k)
    exact_s = time.perf_counter() - started
    started = time.perf_counter()
    approx = approximate_neighbours(x, args.k)
    approx_s = time.perf_counter() - started
    recall = np.mean([len(set(a) & set(e)) / args.k for a, e in zip(approx, exact, strict=True)])
    print(f"{args.kind}: {x.shape[0]} items, exact {exact_s:.1f} s, approximate {approx_s:.1f} s, "
          f"recall@{args.k} {recall:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
