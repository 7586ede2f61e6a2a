"""Train Bitseek hashers and measure retrieval quality, training time and encoding throughput.

Usage (from the repo root):
  .venv/bin/python benchmarks/train_bench.py --data ../shared/data/text/20newsgroups --bits 32 64 \
      --name 20ng [--pretrain none autoencoder ...] [--set epochs=10 ...]

Protocol: test items query the training items; relevant = shares a label; ranking by Hamming
distance with ties counted by expected relevance (training.retrieval_metrics). Writes
benchmarks/results/train_<name>.json with the exact command.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.baselines import fit_pca_itq  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import load_dataset  # noqa: E402
from training.retrieval_metrics import evaluate_codes  # noqa: E402
from training.train import train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_sets(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def throughput(model, items, n: int = 2048, batch: int = 256) -> float:  # type: ignore[no-untyped-def]
    x = model.featurize(items[:n] if not isinstance(items, list) else items[:n])
    start = time.perf_counter()
    for s in range(0, x.shape[0], batch):
        model.hasher.encode(x[s : s + batch])
    return x.shape[0] / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--bits", type=int, nargs="+", default=[32])
    ap.add_argument("--pretrain", nargs="+", default=[None])
    ap.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides key=json")
    ap.add_argument("--name", required=True)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.data)
    assert ds.test is not None and ds.test.labels is not None and ds.train.labels is not None
    overrides = parse_sets(args.set)
    rows = []
    t_all = time.perf_counter()
    for pretrain in args.pretrain:
        for bits in args.bits:
            cfg = TrainConfig.from_dict(
                {**overrides, "bits": bits, **({"pretrain": pretrain} if pretrain else {})}
            )
            t0 = time.perf_counter()
            model = train(ds, cfg)
            seconds = time.perf_counter() - t0
            db = model.encode(ds.train.items)
            q = model.encode(ds.test.items)
            m = evaluate_codes(q, db, ds.test.labels, ds.train.labels)
            # PCA-ITQ on the very features the network reads, in the same run
            x_db, x_q = (
                model.featurizer.transform(ds.train.items),
                model.featurizer.transform(ds.test.items),
            )
            itq = fit_pca_itq(x_db, bits, seed=cfg.seed)
            b = evaluate_codes(itq.encode(x_q), itq.encode(x_db), ds.test.labels, ds.train.labels)
            row = {
                "bits": bits,
                "pretrain": cfg.pretrain,
                "precision_at_100": round(m.precision_at_k, 4),
                "map_at_1000": round(m.mean_average_precision, 4),
                "precision_r2": round(m.precision_within_radius, 4),
                "recall_r2": round(m.recall_within_radius, 4),
                "pca_itq_precision_at_100": round(b.precision_at_k, 4),
                "pca_itq_map_at_1000": round(b.mean_average_precision, 4),
                "train_seconds": round(seconds, 1),
                "encode_items_per_s": round(throughput(model, ds.test.items)),
                "dead_bits": model.metrics["n_dead_bits"],
                "config": cfg.to_dict(),
                "loss_history": model.metrics["finetune"]["loss_history"],
            }
            rows.append(row)
            print(f"{cfg.pretrain:12s} {bits:4d} bits  p@100 {row['precision_at_100']:.4f}  "
                  f"mAP {row['map_at_1000']:.4f}  P@r2 {row['precision_r2']:.4f}  "
                  f"(PCA-ITQ p@100 {row['pca_itq_precision_at_100']:.4f})  "
                  f"{seconds:7.1f}s  dead {row['dead_bits']}", flush=True)  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"train_{args.name}.json"
    cmd = "nice -n 10 .venv/bin/python " + " ".join(shlex.quote(a) for a in sys.argv)
    out.write_text(json.dumps({
        "command": cmd, "data": args.data, "torch_threads": torch.get_num_threads(),
        "total_seconds": round(time.perf_counter() - t_all, 1), "results": rows,
    }, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
