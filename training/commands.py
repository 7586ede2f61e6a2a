"""`bitseek train` and `bitseek encode`, registered on the CLI's subparsers by `register`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

from training.artifact import load_model
from training.config import PRETRAIN_MODES, TrainConfig
from training.data import load_dataset
from training.train import resolve_device, train

LOG = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the `train` and `encode` subcommands to an argparse subparsers object."""
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


class _Bars:
    """tqdm progress bars, one per stage, showing the latest loss."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, event: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        if event["stage"] != self.stage:
            self.close()
            self.stage = event["stage"]
            self.bar = tqdm(total=event["epochs"], desc=self.stage, unit="epoch", file=sys.stderr)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{event['loss']:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def build_config(args: argparse.Namespace) -> TrainConfig:
    base = TrainConfig.from_json(args.config) if args.config else TrainConfig()
    return base.with_overrides(
        bits=args.bits, pretrain=args.pretrain, device=args.device, seed=args.seed,
        epochs=args.epochs, pretrain_epochs=args.pretrain_epochs,
    )  # fmt: skip


def run_train(args: argparse.Namespace) -> int:
    try:
        config = build_config(args)
        dataset = load_dataset(args.data, args.modality)
        bars = _Bars(not args.quiet)
        try:
            model = train(dataset, config, bars)
        finally:
            bars.close()
        model.save(Path(args.out))
    except (ValueError, OSError) as e:  # DatasetError, ModelFormatError and bad settings
        print(f"error: {e}", file=sys.stderr)  # noqa: T201
        return 2
    m = model.metrics
    print(  # noqa: T201
        f"trained a {model.bits}-bit {model.modality} model on {m['n_train']} items in "
        f"{m['train_seconds']:.1f}s ({m['n_dead_bits']} constant bits); saved to {args.out}"
    )
    return 0


def run_encode(args: argparse.Namespace) -> int:
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
