"""`bitseek train`, `bitseek encode` and `bitseek evaluate`, registered on the CLI's subparsers by
`register`."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

from training.config import PRETRAIN_MODES, TrainConfig

# torch, scikit-learn and the training modules are imported by the handlers that use them: every
# `bitseek` command starts in a fraction of a second, `bitseek import --url` among them

EVALUATE_DESCRIPTION = """Scores a trained model against LSH, PCA sign, PCA-ITQ and exact cosine
k-NN under one protocol.

Test items query the training items (all metrics in `training.retrieval_metrics`). The baselines
are fitted on the model's own training features (`model.featurize`), so they see exactly the input
the model saw.
A dataset without a test split gives up a fixed, seeded sample of its rows as queries. The model's
encoding throughput is measured on the queries, encoded from raw items in batches of 256.

Every run saves a precision-recall plot (PNG: --plot, else next to --out, else in the model
directory) and records a summary in the model directory's metrics.json under "evaluation", keyed
by the dataset's absolute path.
"""

LOG = logging.getLogger(__name__)

# One intra-op thread: these models are small, so threads mostly synchronise; on the 2 shared cores
# we measured 2 threads 3-8x *slower* than 1 whenever another process competed for the CPU.
DEFAULT_THREADS = 1
THREADS_HELP = (
    "torch intra-op CPU threads (default 1: for these small models 2 threads measured 3-8x slower "
    "than 1 on 2 cores shared with other work; raise it only on an otherwise idle machine)"
)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1, with a message naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def set_threads(n: int) -> int:
    import torch

    """Set torch's intra-op thread count (before any training work); returns what torch reports."""
    torch.set_num_threads(n)
    return torch.get_num_threads()


def register(subparsers: Any) -> None:
    """Add the `train`, `encode` and `evaluate` subcommands to an argparse subparsers object."""
    p = subparsers.add_parser("train", help="train a semantic hasher on a dataset")
    p.add_argument("--data", required=True, help="dataset file or folder (text, image or vector)")
    p.add_argument("--bits", type=int, default=None, help="code length: 16, 32, 64 or 128 (32)")
    p.add_argument("--out", required=True, help="directory to write the model to")
    p.add_argument("--pretrain", choices=PRETRAIN_MODES, default=None,
                   help="greedy layer-wise pretraining (default: autoencoder)")  # fmt: skip
    p.add_argument("--config", default=None, help="JSON file of training settings (TrainConfig)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None, help="fine-tuning epochs")
    p.add_argument("--pretrain-epochs", type=int, default=None, help="epochs per pretrained layer")
    p.add_argument("--modality", choices=("text", "image", "vector"), default=None,
                   help="override the modality inferred from the data")  # fmt: skip
    p.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS,
                   help=THREADS_HELP)  # fmt: skip
    p.add_argument("--nproc", type=positive_int, default=1,
                   help="data-parallel training processes on this machine (default 1; each "
                   "takes a GPU with --device cuda; torchrun spans machines)")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run_train)

    e = subparsers.add_parser("encode", help="write packed binary codes for a dataset")
    e.add_argument("--model", required=True, help="model directory written by `bitseek train`")
    e.add_argument("--data", required=True, help="dataset file or folder")
    e.add_argument("--split", choices=("train", "test"), default="train")
    e.add_argument(
        "--out", required=True, help="output .npy: uint8 (N, bits/8), numpy.packbits order"
    )
    e.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    e.set_defaults(handler=run_encode)

    v = subparsers.add_parser(
        "evaluate",
        help="score a trained model and the LSH / PCA sign / PCA-ITQ baselines",
        description=EVALUATE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("--model", required=True, type=Path, help="trained model directory")
    v.add_argument("--data", required=True, type=Path, help="labelled dataset path")
    v.add_argument("--json", action="store_true", help="print JSON instead of a table")
    v.add_argument(
        "--out", type=Path, help="write the full results (JSON, with the command) to this file"
    )
    v.add_argument(
        "--plot",
        type=Path,
        help="precision-recall PNG (default: next to --out, else pr_<data>.png in the model dir)",
    )
    v.add_argument("--device", default="cpu", help="torch device for the model (cpu, cuda)")
    v.add_argument("--seed", type=int, default=0, help="seed for LSH, ITQ and holdouts")
    v.add_argument("--threads", type=positive_int, default=DEFAULT_THREADS, help=THREADS_HELP)
    v.set_defaults(handler=run_evaluate)


class _Bars:
    """tqdm progress bars, one per stage, in minibatch steps when the events carry them (else in
    epochs), showing the epoch's running loss. Two stages may run at once (the denoiser beside
    the hasher): each keeps its own bar, closed when its last step is done."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bars: dict[str, Any] = {}
        self.lock = threading.Lock()  # events come from the training thread and the denoiser's

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        with self.lock:
            steps = int(event.get("steps", 1))
            stage = event["stage"]
            bar = self.bars.get(stage)
            if bar is None:
                unit = "step" if "steps" in event else "epoch"
                total = event["epochs"] * steps
                bar = self.bars[stage] = tqdm(total=total, desc=stage, unit=unit, file=sys.stderr)
            done = (event["epoch"] - 1) * steps + int(event.get("step", 1))
            bar.update(max(0, done - bar.n))
            bar.set_postfix(epoch=f"{event['epoch']}/{event['epochs']}",
                            loss=f"{event['loss']:.4f}")  # fmt: skip
            if bar.n >= bar.total:  # the stage's last step: a later stage of its name starts anew
                self.bars.pop(stage).close()

    def close(self) -> None:
        with self.lock:
            for bar in self.bars.values():
                bar.close()
            self.bars.clear()


def build_config(args: argparse.Namespace) -> TrainConfig:
    base = TrainConfig.from_json(args.config) if args.config else TrainConfig()
    return base.with_overrides(
        bits=args.bits, pretrain=args.pretrain, device=args.device, seed=args.seed,
        epochs=args.epochs, pretrain_epochs=args.pretrain_epochs,
    )  # fmt: skip


def train_command(args: argparse.Namespace) -> str:
    """The `bitseek train` command line these arguments stand for (recorded with the model)."""
    parts = ["bitseek", "train", "--data", str(args.data)]
    for flag in ("bits", "out", "pretrain", "config", "device", "seed", "epochs",
                 "pretrain_epochs", "modality"):  # fmt: skip
        value = getattr(args, flag)
        if value is not None:
            parts += [f"--{flag.replace('_', '-')}", str(value)]
    if args.threads != DEFAULT_THREADS:
        parts += ["--threads", str(args.threads)]
    if args.nproc != 1:
        parts += ["--nproc", str(args.nproc)]
    if args.quiet:
        parts.append("--quiet")
    return shlex.join(parts)


def run_train(args: argparse.Namespace) -> int:
    """`bitseek train`; with --nproc N > 1, N data-parallel processes (training/distributed.py),
    as under torchrun, where each process runs this with the group described in its environment."""
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        try:
            build_config(args)  # a bad setting fails here, once, not in N processes
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)  # noqa: T201
            return 2
        from training import distributed

        return distributed.launch(args.nproc, _train_process, args)
    return _train_process(args)


def _train_process(args: argparse.Namespace) -> int:
    from training import distributed
    from training.data import load_dataset
    from training.train import train

    started = time.perf_counter()
    threads = set_threads(args.threads)  # before any torch work, so every stage runs with it
    try:
        config = build_config(args)
        dataset = load_dataset(args.data, args.modality)
        with distributed.session(config.device):
            main = distributed.is_main()
            if not main:  # one rank speaks for the run
                logging.getLogger().setLevel(logging.ERROR)
            bars = _Bars(not args.quiet and main)
            try:
                model = train(dataset, config, bars)
            finally:
                bars.close()
        if not main:
            return 0  # every rank holds the same weights; rank 0 writes them
        model.metrics.update({
            "command": train_command(args),
            "data": str(args.data),
            "torch_threads": threads,
            # data loading + training, as a user waits for it (train_seconds: training only)
            "wall_seconds": round(time.perf_counter() - started, 2),
        })  # fmt: skip
        model.save(Path(args.out))
    except (ValueError, OSError) as e:  # DatasetError, ModelFormatError and bad settings
        print(f"error: {e}", file=sys.stderr)  # noqa: T201
        return 2
    m = model.metrics
    print(  # noqa: T201
        f"trained a {model.bits}-bit {model.modality} model on {m['n_train']} items in "
        f"{m['train_seconds']:.1f}s ({m['wall_seconds']:.1f}s with loading, {threads} torch "
        f"thread(s); {m['n_dead_bits']} constant bits); saved to {args.out}"
    )
    return 0


def run_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from training.artifact import load_model
    from training.data import load_dataset
    from training.device import resolve_device

    try:
        model = load_model(args.model, device=resolve_device(args.device))
        dataset = load_dataset(args.data, model.modality)  # type: ignore[arg-type]
        split = dataset.train if args.split == "train" else dataset.test
        if split is None:
            raise ValueError(f"{args.data}: has no test split; use --split train")
        codes = model.encode(split.items)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, codes)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)  # noqa: T201
        return 2
    print(f"wrote {codes.shape[0]} codes of {model.bits} bits to {args.out}")  # noqa: T201
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from training.evaluate import run

    return run(args)
