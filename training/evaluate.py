"""`bitseek evaluate`: a trained model against LSH, PCA sign, PCA-ITQ and exact cosine k-NN under
one protocol, described by ``training.commands.EVALUATE_DESCRIPTION`` (the command's --help).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from training.artifact import load_model, record_evaluation
from training.baselines import BASELINES, Features
from training.commands import DEFAULT_THREADS, set_threads
from training.data import Dataset, DatasetError, Split, load_dataset
from training.features import ImageFeaturizer
from training.retrieval_metrics import RetrievalMetrics, cosine_knn_precision, evaluate_codes

LOG = logging.getLogger(__name__)

HOLDOUT_QUERIES = 1000  # queries drawn from the rows when a dataset has no test split
THROUGHPUT_BATCH = 256  # items per encode call when measuring throughput (the setting)


class EvaluableModel(Protocol):
    """What evaluation needs from `training.artifact.TrainedModel`."""

    @property
    def bits(self) -> int: ...

    def featurize(self, items: Any) -> Features: ...

    def encode(self, items: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class Evaluation:
    bits: int
    n_queries: int
    n_database: int
    methods: dict[str, RetrievalMetrics]  # "model" first, then the baselines that could run
    skipped: dict[str, str] = field(default_factory=dict)  # baseline -> why it could not run
    seconds: dict[str, float] = field(default_factory=dict)  # encode/fit time per method
    encode_items_per_second: float = 0.0  # the model, raw query items -> codes, batches of 256
    encode_batch: int = THROUGHPUT_BATCH
    # exact cosine k-NN on the same features: not a hash, the ceiling of ranking by the input
    cosine_knn_precision: float | None = None
    # the same on the raw pixels alone, for an image model that reads more than its pixels
    pixel_cosine_knn_precision: float | None = None

    def to_dict(self, pr_curves: bool = True) -> dict[str, Any]:
        methods = {name: m.to_dict() for name, m in self.methods.items()}
        if not pr_curves:
            for m in methods.values():
                del m["pr_curve"]
        return {
            "bits": self.bits,
            "n_queries": self.n_queries,
            "n_database": self.n_database,
            "encode_items_per_second": round(self.encode_items_per_second, 1),
            "encode_batch": self.encode_batch,
            "methods": methods,
            "cosine_knn_precision_at_k": self.cosine_knn_precision,
            "pixel_cosine_knn_precision_at_k": self.pixel_cosine_knn_precision,
            "skipped": dict(self.skipped),
            "seconds": dict(self.seconds),
        }


def _take(split: Split, rows: np.ndarray) -> Split:
    items = split.items
    taken = [items[i] for i in rows] if isinstance(items, list) else items[rows]
    labels = split.labels[rows] if split.labels is not None else None
    return Split(items=taken, ids=[split.ids[i] for i in rows], labels=labels)


def queries_and_database(dataset: Dataset, seed: int = 0) -> tuple[Split, Split]:
    """(queries, database): the test and train splits, or a seeded holdout of train."""
    if dataset.test is not None and len(dataset.test) > 0:
        queries, database = dataset.test, dataset.train
    else:
        n = len(dataset.train)
        if n < 2:
            raise DatasetError(f"{dataset.source}: needs at least 2 rows to evaluate, has {n}")
        n_queries = min(HOLDOUT_QUERIES, max(1, n // 10))
        order = np.random.default_rng(seed).permutation(n)
        queries = _take(dataset.train, np.sort(order[:n_queries]))
        database = _take(dataset.train, np.sort(order[n_queries:]))
        LOG.info("%s has no test split: %d rows held out as queries", dataset.source, n_queries)
    for name, split in (("test (queries)", queries), ("train (database)", database)):
        if split.labels is None or split.labels.shape[1] == 0:
            raise DatasetError(
                f"{dataset.source}: the {name} split has no labels; evaluation needs labels to "
                "decide which items are relevant"
            )
    return queries, database


def evaluate_baselines(
    db_features: Features,
    query_features: Features,
    db_labels: np.ndarray,
    query_labels: np.ndarray,
    bits: int,
    *,
    seed: int = 0,
) -> tuple[dict[str, RetrievalMetrics], dict[str, str], dict[str, float]]:
    """Fit each baseline on the database features and score it: (metrics, skipped, seconds)."""
    results: dict[str, RetrievalMetrics] = {}
    skipped: dict[str, str] = {}
    seconds: dict[str, float] = {}
    for name, fit in BASELINES.items():
        start = time.perf_counter()
        try:
            hash_ = fit(db_features, bits, seed)
        except ValueError as err:  # e.g. more bits than PCA components
            LOG.warning("baseline %s skipped: %s", name, err)
            skipped[name] = str(err)
            continue
        query_codes, db_codes = hash_.encode(query_features), hash_.encode(db_features)
        seconds[name] = time.perf_counter() - start
        results[name] = evaluate_codes(query_codes, db_codes, query_labels, db_labels)
    return results, skipped, seconds


def encode_batched(
    model: EvaluableModel, items: Any, batch: int = THROUGHPUT_BATCH
) -> tuple[np.ndarray, float]:
    """(codes, items per second): raw items encoded `batch` at a time, as a client would send them.

    One batch is encoded first, untimed, so one-off set-up (allocator, lazy imports) is not counted.
    Codes equal `model.encode(items)` since encoding is row-wise and deterministic.
    """
    n = len(items) if isinstance(items, list) else items.shape[0]
    if n == 0:
        raise ValueError("cannot measure encoding throughput on zero items")
    model.encode(items[:batch])
    start = time.perf_counter()
    codes = np.concatenate([model.encode(items[s : s + batch]) for s in range(0, n, batch)])
    return codes, n / max(time.perf_counter() - start, 1e-9)


def evaluate_model(model: EvaluableModel, dataset: Dataset, *, seed: int = 0) -> Evaluation:
    """Score the model's codes and the three baselines on the same queries and database."""
    queries, database = queries_and_database(dataset, seed)
    assert queries.labels is not None and database.labels is not None  # checked above
    start = time.perf_counter()
    query_codes, items_per_second = encode_batched(model, queries.items)
    db_codes = model.encode(database.items)
    seconds = {"model": time.perf_counter() - start}
    methods = {
        "model": evaluate_codes(query_codes, db_codes, queries.labels, database.labels),
    }
    db_features, query_features = model.featurize(database.items), model.featurize(queries.items)
    baselines, skipped, fit_seconds = evaluate_baselines(
        db_features, query_features, database.labels, queries.labels, model.bits, seed=seed
    )
    methods.update(baselines)
    seconds.update(fit_seconds)
    start = time.perf_counter()
    cosine = cosine_knn_precision(
        query_features, db_features, queries.labels, database.labels, k=methods["model"].k
    )
    seconds["cosine_knn"] = time.perf_counter() - start
    pixel_cosine = None
    featurizer = getattr(model, "featurizer", None)
    if isinstance(featurizer, ImageFeaturizer) and featurizer.gradients:
        pixel_cosine = cosine_knn_precision(
            featurizer.pixels(np.asarray(query_features)),
            featurizer.pixels(np.asarray(db_features)),
            queries.labels,
            database.labels,
            k=methods["model"].k,
        )
    return Evaluation(
        bits=model.bits,
        n_queries=len(queries),
        n_database=len(database),
        methods=methods,
        skipped=skipped,
        seconds=seconds,
        encode_items_per_second=items_per_second,
        cosine_knn_precision=cosine,
        pixel_cosine_knn_precision=pixel_cosine,
    )


def format_table(evaluation: Evaluation) -> str:
    """A fixed-width table, one row per method."""
    any_metrics = next(iter(evaluation.methods.values()))
    k, depth, radius = any_metrics.k, any_metrics.map_depth, any_metrics.radius
    header = (
        f"{'method':<10} {f'P@{k}':>8} {f'mAP@{depth}':>9} {f'P(r<={radius})':>9} "
        f"{f'R(r<={radius})':>9} {'empty':>6} {'seconds':>8}"
    )
    lines = [
        f"{evaluation.bits} bits, {evaluation.n_queries} queries, "
        f"{evaluation.n_database} database items; model encodes "
        f"{evaluation.encode_items_per_second:,.0f} items/s (batches of {evaluation.encode_batch})",
        header,
        "-" * len(header),
    ]
    for name, m in evaluation.methods.items():
        lines.append(
            f"{name:<10} {m.precision_at_k:>8.3f} {m.mean_average_precision:>9.3f} "
            f"{m.precision_within_radius:>9.3f} {m.recall_within_radius:>9.3f} "
            f"{m.empty_within_radius:>6.2f} {evaluation.seconds.get(name, float('nan')):>8.1f}"
        )
    lines.extend(f"{name:<10} skipped: {why}" for name, why in evaluation.skipped.items())
    if evaluation.cosine_knn_precision is not None:
        lines.append(
            f"{'cosine kNN':<10} {evaluation.cosine_knn_precision:>8.3f} (exact, on the same "
            f"features; a reference, not a hash) {evaluation.seconds.get('cosine_knn', 0):.1f} s"
        )
    if evaluation.pixel_cosine_knn_precision is not None:
        lines.append(
            f"{'cosine kNN':<10} {evaluation.pixel_cosine_knn_precision:>8.3f} (exact, on the raw "
            "pixels alone)"
        )
    return "\n".join(lines)


def plot_pr_curves(evaluation: Evaluation, path: Path, title: str = "") -> None:
    """Save precision against recall over Hamming radii 0..bits, one line per method (PNG)."""
    # Figure without pyplot: no global backend state, safe in servers and tests (Agg canvas).
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5), dpi=120)
    ax = fig.add_subplot()
    for name, m in evaluation.methods.items():
        ax.plot(m.pr_curve.recall, m.pr_curve.precision, marker=".", label=name)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title or f"Hamming-ball lookup, radius 0..{evaluation.bits}")
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")


def _command(args: argparse.Namespace) -> str:
    parts = ["bitseek", "evaluate", "--model", str(args.model), "--data", str(args.data)]
    if args.json:
        parts.append("--json")
    for flag in ("out", "plot"):
        if getattr(args, flag) is not None:
            parts += [f"--{flag}", str(getattr(args, flag))]
    if args.device != "cpu":
        parts += ["--device", args.device]
    if args.seed != 0:
        parts += ["--seed", str(args.seed)]
    if args.threads != DEFAULT_THREADS:
        parts += ["--threads", str(args.threads)]
    return shlex.join(parts)


def plot_path(args: argparse.Namespace) -> Path:
    """Where this run's PR plot goes: --plot, else beside --out, else in the model directory."""
    if args.plot is not None:
        return Path(args.plot)
    if args.out is not None:
        return Path(args.out).with_suffix(".png")
    stem = args.data.name.split(".")[0] or "data"
    return Path(args.model) / f"pr_{stem}.png"


def run(args: argparse.Namespace) -> int:
    """Handler of `bitseek evaluate`; returns the process exit code."""
    if args.plot is not None and args.plot.suffix.lower() != ".png":
        _fail(f"--plot must name a .png file, got {args.plot}")
        return 2
    started = time.perf_counter()
    threads = set_threads(args.threads)
    try:
        # the model first: a wrong --model fails before a large dataset is read
        model = load_model(args.model, device=args.device)
        dataset = load_dataset(args.data, model.modality)  # type: ignore[arg-type]
        evaluation = evaluate_model(model, dataset, seed=args.seed)
    except (OSError, ValueError) as err:  # DatasetError and ModelFormatError are ValueErrors
        _fail(str(err))
        return 2
    plot = plot_path(args)
    result = {
        "command": _command(args),
        "model": str(args.model),
        "data": str(args.data),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "evaluate_seconds": round(time.perf_counter() - started, 2),
        "torch_threads": threads,
        "device": args.device,
        "out": None if args.out is None else str(args.out),
        "plot": str(plot),
        **evaluation.to_dict(),
    }
    try:
        plot_pr_curves(evaluation, plot, title=f"{args.data.name}, {evaluation.bits} bits")
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    except OSError as err:
        _fail(f"cannot write results: {err}")
        return 2
    summary = {k: v for k, v in result.items() if k != "methods"}
    summary["methods"] = evaluation.to_dict(pr_curves=False)["methods"]
    try:
        record_evaluation(Path(args.model), str(Path(args.data).resolve()), summary)
    except (OSError, ValueError) as err:  # e.g. a read-only model: the results above still stand
        sys.stderr.write(
            f"bitseek evaluate: warning: evaluation not recorded in the model: {err}\n"
        )
    # CLI output goes to stdout: the table, or JSON a script can parse
    text = (
        json.dumps(result, indent=2) if args.json else f"{format_table(evaluation)}\nplot: {plot}"
    )
    sys.stdout.write(text + "\n")
    return 0


def _fail(message: str) -> None:
    sys.stderr.write(f"bitseek evaluate: error: {message}\n")
