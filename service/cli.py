"""The `bitseek` command: one entry point dispatching to training, evaluation and serving."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from service.commands import register as register_service
from training.commands import register as register_training


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bitseek",
        description="Semantic hashing: train binary-code autoencoders, evaluate, serve search.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"),
        help="logging level (default: INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_training(subparsers)
    register_service(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.handler(args))
    except (FileNotFoundError, ValueError) as error:  # DatasetError is a ValueError
        # User mistakes (bad paths, malformed data, invalid settings) get one line, not a traceback.
        print(f"bitseek {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
