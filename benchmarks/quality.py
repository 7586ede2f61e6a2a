"""Quality sweep: the real `bitseek train` and `bitseek evaluate` commands over datasets x bits x
pretraining modes, collected into one table.

Usage (from the repo root; see benchmarks/README.md, "Quality sweep"):
  nice -n 10 .venv/bin/python benchmarks/quality.py --name tmc --data ../shared/data/vectors/tmc \
      --bits 32 [--pretrain default none rbm ...] [--seeds 0 1 2] [--jobs 2] [--force]

Each combination runs, as subprocesses and exactly as a user would type them,
  bitseek train --data D --bits N --out M [--pretrain P]
  bitseek evaluate --model M --data D --json --out M/../evaluation.json
with models and logs under a scratch directory (default /tmp/bitseek-quality/<name>/), never in the
repo. A finished combination leaves <scratch>/<combo>/row.json; a rerun skips those unless --force,
so a long sweep can be stopped and resumed. The results (every metric of the model and of the LSH /
PCA sign / PCA-ITQ baselines, train wall time, encoding throughput, the two exact commands per row)
go to benchmarks/results/quality_<name>.json, rewritten after every combination, and a combined
precision-recall plot per dataset to quality_<name>_<dataset>.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from training.config import PRETRAIN_MODES  # noqa: E402  (light: no torch)

RESULTS = REPO / "benchmarks" / "results"
DEFAULT_SCRATCH = Path("/tmp/bitseek-quality")
DEFAULT = "default"  # pretrain "mode" meaning: pass no --pretrain flag (the CLI's default)
METHODS = ("model", "lsh", "pca_sign", "pca_itq")
# one colour per method on every panel: the model's runs in blues and greens, baselines apart
MODEL_COLOURS = ("tab:blue", "tab:green", "tab:cyan")
BASELINE_COLOURS = {"lsh": "tab:gray", "pca_sign": "tab:purple", "pca_itq": "tab:red"}
# (argv, log file) -> exit code, or (exit code, peak RSS in bytes) where the runner measures it
Runner = Callable[[list[str], Path], "int | tuple[int, int]"]
# The development suite (`../shared/data`, see its README): long and short texts, word counts,
# grey and colour images. `--suite` trains each at 32 bits (every `--seeds`) and 64 bits (seed 0).
SUITE = {
    "20newsgroups": "text/20newsgroups",
    "tmc": "vectors/tmc",
    "agnews": "text/agnews",
    "stackoverflow": "text/stackoverflow",
    "biomedical": "text/biomedical",
    "mnist": "images/mnist.npz",
    "cifar10": "images/cifar10",
}
SUITE_BITS = (32, 64)
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"


@dataclass(frozen=True)
class Combo:
    data: str  # dataset path as given (relative paths resolve from the current directory)
    bits: int
    pretrain: str = DEFAULT
    seed: int = 0  # passed as `--seed` when not 0 (the CLI's default)

    @property
    def dataset(self) -> str:
        return dataset_name(self.data)

    @property
    def slug(self) -> str:
        seed = f"-seed{self.seed}" if self.seed else ""
        return f"{self.dataset}-{self.bits}-{self.pretrain}{seed}"


@dataclass(frozen=True)
class Sweep:
    bitseek: str  # the bitseek executable
    scratch: Path  # models, logs and per-combination rows
    config: str | None = None  # passed to `bitseek train --config`
    threads: int = 1  # torch threads per train / evaluate process


def dataset_name(path: str) -> str:
    """'../shared/data/images/mnist.npz' -> 'mnist'; a folder keeps its name."""
    return Path(path.rstrip("/")).name.split(".")[0] or "data"


def train_argv(combo: Combo, sweep: Sweep, model_dir: Path) -> list[str]:
    argv = [sweep.bitseek, "train", "--data", combo.data, "--bits", str(combo.bits)]
    argv += ["--out", str(model_dir)]
    if combo.pretrain != DEFAULT:
        argv += ["--pretrain", combo.pretrain]
    if sweep.config is not None:
        argv += ["--config", sweep.config]
    if combo.seed:
        argv += ["--seed", str(combo.seed)]
    if sweep.threads != 1:  # 1 is the CLI's default: keep the command the issue's plain form
        argv += ["--threads", str(sweep.threads)]
    return argv


def evaluate_argv(combo: Combo, sweep: Sweep, model_dir: Path, out: Path) -> list[str]:
    argv = [sweep.bitseek, "evaluate", "--model", str(model_dir), "--data", combo.data]
    argv += ["--json", "--out", str(out)]
    if sweep.threads != 1:
        argv += ["--threads", str(sweep.threads)]
    return argv


def run_subprocess(argv: list[str], log: Path) -> tuple[int, int]:
    """Run one CLI command with its stdout and stderr (progress bars, logs) appended to `log`;
    returns its exit code and peak resident memory (the child's own, from wait4)."""
    with log.open("a") as f:
        f.write(f"$ {shlex.join(argv)}\n")
        f.flush()
        process = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        return process.returncode, usage.ru_maxrss * 1024  # Linux reports KiB


def _outcome(result: int | tuple[int, int]) -> tuple[int, int | None]:
    return (result, None) if isinstance(result, int) else result


class ComboFailed(RuntimeError):
    pass


def _tail(log: Path, lines: int = 5) -> str:
    text = log.read_text(errors="replace").replace("\r", "\n") if log.exists() else ""
    return " | ".join(line for line in text.splitlines()[-lines:] if line.strip())


def _round(obj: Any, digits: int = 4) -> Any:
    if isinstance(obj, float):
        return round(obj, digits)
    if isinstance(obj, dict):
        return {k: _round(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v, digits) for v in obj]
    return obj


def _write_json(path: Path, obj: Any) -> None:
    """Write through a temporary sibling and a rename: a killed sweep never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def run_combo(
    combo: Combo, sweep: Sweep, *, force: bool = False, runner: Runner = run_subprocess
) -> dict[str, Any]:
    """Train and evaluate one combination (or reuse its row.json); returns its result row."""
    work = sweep.scratch / combo.slug
    row_path = work / "row.json"
    if row_path.exists() and not force:
        row = json.loads(row_path.read_text())
        row["resumed"] = True
        return row
    work.mkdir(parents=True, exist_ok=True)
    row_path.unlink(missing_ok=True)
    model_dir, out, log = work / "model", work / "evaluation.json", work / "log.txt"
    log.write_text("")
    train = train_argv(combo, sweep, model_dir)
    start = time.perf_counter()
    code, peak_rss = _outcome(runner(train, log))
    if code != 0:
        raise ComboFailed(f"{combo.slug}: bitseek train failed ({log}): {_tail(log)}")
    train_wall = time.perf_counter() - start
    evaluate = evaluate_argv(combo, sweep, model_dir, out)
    out.unlink(missing_ok=True)
    if _outcome(runner(evaluate, log))[0] != 0 or not out.exists():
        raise ComboFailed(f"{combo.slug}: bitseek evaluate failed ({log}): {_tail(log)}")
    evaluation = json.loads(out.read_text())
    metrics = json.loads((model_dir / "metrics.json").read_text())
    train_config = json.loads((model_dir / "config.json").read_text()).get("train", {})
    row = {
        "data": combo.data,
        "dataset": combo.dataset,
        "bits": combo.bits,
        "pretrain": train_config.get("pretrain", combo.pretrain),  # what the model actually used
        "pretrain_flag": combo.pretrain,
        "seed": combo.seed,
        "train_command": shlex.join(train),
        "evaluate_command": shlex.join(evaluate),
        "train_wall_seconds": round(train_wall, 1),  # the whole process, as a user waits for it
        "train_seconds": metrics.get("train_seconds"),  # inside train(): no start-up, no loading
        "train_peak_rss_bytes": peak_rss,
        "torch_threads": metrics.get("torch_threads"),
        "n_dead_bits": metrics.get("n_dead_bits"),
        "n_queries": evaluation["n_queries"],
        "n_database": evaluation["n_database"],
        "encode_items_per_second": evaluation["encode_items_per_second"],
        "encode_batch": evaluation["encode_batch"],
        "methods": _round(evaluation["methods"]),
        "cosine_knn_precision_at_k": evaluation.get("cosine_knn_precision_at_k"),
        "pixel_cosine_knn_precision_at_k": evaluation.get("pixel_cosine_knn_precision_at_k"),
        "skipped": evaluation["skipped"],
        "evaluated_at": evaluation["created_at"],
        "model_dir": str(model_dir),
        "evaluation_json": str(out),
        "plot": evaluation["plot"],
    }
    _write_json(row_path, row)
    return row


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "" if value is None else format(value, spec)


def _run_label(r: dict[str, Any]) -> str:
    return f"{r['pretrain']}, seed {r['seed']}" if r.get("seed") else r["pretrain"]


def seed_spread(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation of the model's P@100 over seeds, per dataset, bits and
    pretraining, for every group that ran with more than one seed."""
    groups: dict[tuple[str, int, str], list[float]] = {}
    for r in rows:
        key = (r["dataset"], r["bits"], r["pretrain"])
        groups.setdefault(key, []).append(r["methods"]["model"]["precision_at_k"])
    spread = []
    for (dataset, bits, pretrain), values in groups.items():
        if len(values) < 2:
            continue
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        spread.append({"dataset": dataset, "bits": bits, "pretrain": pretrain, "runs": len(values),
                       "p_at_100_mean": round(mean, 4), "p_at_100_std": round(std, 4),
                       "p_at_100_min": min(values), "p_at_100_max": max(values)})  # fmt: skip
    return spread


def markdown_tables(rows: Sequence[dict[str, Any]]) -> str:
    """The model per row, then every baseline metric once per dataset and code length."""
    lines = [
        "| data | bits | pretrain | P@100 | mAP@1000 | P(r<=2) | R(r<=2) | LSH P@100 "
        "| PCA sign P@100 | PCA-ITQ P@100 | model / PCA-ITQ | train wall s | encode items/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        m = r["methods"]["model"]
        p = {name: r["methods"].get(name, {}).get("precision_at_k") for name in METHODS}
        ratio = p["model"] / p["pca_itq"] if p["pca_itq"] else None
        lines.append(
            f"| {r['dataset']} | {r['bits']} | {_run_label(r)} | {m['precision_at_k']:.3f} "
            f"| {m['mean_average_precision']:.3f} | {m['precision_within_radius']:.3f} "
            f"| {m['recall_within_radius']:.3f} | {_fmt(p['lsh'])} | {_fmt(p['pca_sign'])} "
            f"| {_fmt(p['pca_itq'])} | {_fmt(ratio, '.2f')} | {r['train_wall_seconds']:.0f} "
            f"| {r['encode_items_per_second']:,.0f} |"
        )
    lines += [
        "",
        "| data | bits | baseline | P@100 | mAP@1000 | P(r<=2) | R(r<=2) |",
        "|---|---|---|---|---|---|---|",
    ]
    seen: set[tuple[str, int]] = set()
    for r in rows:  # baselines depend on the data and the bits only, not on the pretraining
        if (r["dataset"], r["bits"]) in seen:
            continue
        seen.add((r["dataset"], r["bits"]))
        for name in METHODS[1:]:
            if name not in r["methods"]:
                lines.append(f"| {r['dataset']} | {r['bits']} | {name} | skipped: "
                             f"{r['skipped'].get(name, '?')} | | | |")  # fmt: skip
                continue
            b = r["methods"][name]
            lines.append(
                f"| {r['dataset']} | {r['bits']} | {name} | {b['precision_at_k']:.3f} "
                f"| {b['mean_average_precision']:.3f} | {b['precision_within_radius']:.3f} "
                f"| {b['recall_within_radius']:.3f} |"
            )
    spread = seed_spread(rows)
    if spread:
        lines += ["", "| data | bits | pretrain | seeds | P@100 mean | std | min | max |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for g in spread:
            lines.append(
                f"| {g['dataset']} | {g['bits']} | {g['pretrain']} | {g['runs']} "
                f"| {g['p_at_100_mean']:.3f} | {g['p_at_100_std']:.3f} | {g['p_at_100_min']:.3f} "
                f"| {g['p_at_100_max']:.3f} |"
            )
    return "\n".join(lines)


def _geometric_mean(values: Sequence[float]) -> float:
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def suite_combos(
    root: Path, seeds: Sequence[int], sets: Sequence[str] | None = None
) -> list[Combo]:
    """Every suite set (or those in ``sets``) at 32 bits with each seed, then at 64 bits with the
    first: cheap sets and seed 0 first, so a stopped run has the widest table."""
    paths = [path for name, path in SUITE.items() if sets is None or name in sets]
    combos = [Combo(str(root / path), bits, DEFAULT, seeds[0]) for path in paths
              for bits in SUITE_BITS]  # fmt: skip
    return combos + [Combo(str(root / path), SUITE_BITS[0], DEFAULT, seed)
                     for seed in seeds[1:] for path in paths]  # fmt: skip


def suite_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per set and code length: the model's P@100 over seeds against PCA-ITQ and exact cosine
    k-NN on the same features, train time and peak memory; the geometric mean of the ratio to
    PCA-ITQ over the sets, per code length."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["dataset"], r["bits"]), []).append(r)
    entries = []
    for (dataset, bits), runs in groups.items():
        model = [r["methods"]["model"]["precision_at_k"] for r in runs]
        mean = sum(model) / len(model)
        std = (
            (sum((v - mean) ** 2 for v in model) / (len(model) - 1)) ** 0.5
            if len(model) > 1
            else None
        )
        itq = runs[0]["methods"].get("pca_itq", {}).get("precision_at_k")
        knn = runs[0].get("cosine_knn_precision_at_k")
        pixel_knn = runs[0].get("pixel_cosine_knn_precision_at_k")
        rss = [r["train_peak_rss_bytes"] for r in runs if r.get("train_peak_rss_bytes")]
        entries.append({
            "dataset": dataset, "bits": bits, "seeds": sorted(r["seed"] for r in runs),
            "model_p_at_100": round(mean, 4), "model_std": None if std is None else round(std, 4),
            "pca_itq": itq, "cosine_knn": knn,
            "ratio_pca_itq": round(mean / itq, 4) if itq else None,
            "ratio_cosine_knn": round(mean / knn, 4) if knn else None,
            "pixel_cosine_knn": pixel_knn,
            "ratio_pixel_cosine_knn": round(mean / pixel_knn, 4) if pixel_knn else None,
            "train_wall_seconds": round(sum(r["train_wall_seconds"] for r in runs) / len(runs), 1),
            "train_peak_rss_bytes": max(rss) if rss else None,
        })  # fmt: skip
    geo = {}
    for bits in sorted({e["bits"] for e in entries}):
        ratios = [e["ratio_pca_itq"] for e in entries if e["bits"] == bits and e["ratio_pca_itq"]]
        if ratios:
            geo[str(bits)] = {
                "sets": len(ratios),
                "geometric_mean_ratio_pca_itq": round(_geometric_mean(ratios), 4),
                "min_ratio_pca_itq": min(ratios),
            }
    return {"entries": entries, "geometric_mean": geo}


def suite_table(summary: dict[str, Any]) -> str:
    lines = [
        "| data | bits | model P@100 (mean +- std over seeds) | PCA-ITQ | cosine k-NN "
        "| model / PCA-ITQ | model / k-NN | k-NN on pixels alone | model / pixels k-NN "
        "| train wall s | train peak RSS GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in sorted(summary["entries"], key=lambda e: (e["bits"], e["dataset"])):
        spread = (
            f" +- {e['model_std']:.3f} ({len(e['seeds'])})" if e["model_std"] is not None else ""
        )
        rss = e["train_peak_rss_bytes"]
        lines.append(
            f"| {e['dataset']} | {e['bits']} | {e['model_p_at_100']:.3f}{spread} "
            f"| {_fmt(e['pca_itq'])} | {_fmt(e['cosine_knn'])} | {_fmt(e['ratio_pca_itq'], '.2f')} "
            f"| {_fmt(e['ratio_cosine_knn'], '.2f')} | {_fmt(e.get('pixel_cosine_knn'))} "
            f"| {_fmt(e.get('ratio_pixel_cosine_knn'), '.2f')} | {e['train_wall_seconds']:.0f} "
            f"| {_fmt(None if rss is None else rss / 1e9, '.2f')} |"
        )
    for bits, g in summary["geometric_mean"].items():
        lines.append(
            f"\n{bits} bits: geometric mean of model / PCA-ITQ over {g['sets']} sets "
            f"{g['geometric_mean_ratio_pca_itq']:.3f} (lowest {g['min_ratio_pca_itq']:.3f})"
        )
    return "\n".join(lines)


def plot_dataset(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """One panel per code length: the model per pretraining mode, the baselines dashed."""
    from matplotlib.figure import Figure

    bits = sorted({r["bits"] for r in rows})
    fig = Figure(figsize=(4.5 * len(bits), 4.2), dpi=110)
    for i, b in enumerate(bits):
        ax = fig.add_subplot(1, len(bits), i + 1)
        at_bits = [r for r in rows if r["bits"] == b]
        for k, r in enumerate(at_bits):
            curve = r["methods"]["model"]["pr_curve"]
            ax.plot(curve["recall"], curve["precision"], marker=".", color=MODEL_COLOURS[k % 3],
                    label=f"model ({_run_label(r)})")  # fmt: skip
        for name in METHODS[1:]:
            if name in at_bits[0]["methods"]:
                curve = at_bits[0]["methods"][name]["pr_curve"]
                ax.plot(curve["recall"], curve["precision"], linestyle="--",
                        color=BASELINE_COLOURS.get(name), label=name)  # fmt: skip
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="recall", title=f"{rows[0]['dataset']}, {b} bits")
        ax.set_ylabel("precision" if i == 0 else "")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, format="png")


def _git_commit() -> str | None:
    try:  # read-only: which code produced the numbers
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def sweep_command(argv: Sequence[str]) -> str:
    nice = os.nice(0)
    prefix = f"nice -n {nice} " if nice > 0 else ""
    python = os.path.relpath(sys.executable) if sys.executable.startswith(str(REPO)) else "python"
    return prefix + shlex.join([python, os.path.relpath(__file__), *argv])


def run_sweep(
    combos: Sequence[Combo],
    sweep: Sweep,
    *,
    name: str,
    results: Path = RESULTS,
    jobs: int = 1,
    force: bool = False,
    command: str = "",
    runner: Runner = run_subprocess,
) -> dict[str, Any]:
    """Run (or resume) every combination, `jobs` at a time; writes and returns the report."""
    results.mkdir(parents=True, exist_ok=True)
    out = results / f"quality_{name}.json"
    report: dict[str, Any] = {
        "command": command,
        "name": name,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "cpus": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
        "jobs": jobs,
        "scratch": str(sweep.scratch),
        "rows": [],
        "failed": {},
        "plots": {},
    }
    done: dict[Combo, dict[str, Any]] = {}

    def flush() -> None:  # after every combination: a killed sweep keeps what it finished
        report["rows"] = [done[c] for c in combos if c in done]
        report["seed_spread"] = seed_spread(report["rows"])
        report["suite"] = suite_summary(report["rows"])
        report["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
        _write_json(out, report)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(run_combo, c, sweep, force=force, runner=runner): c for c in combos}
        for future in as_completed(futures):
            combo = futures[future]
            try:
                done[combo] = future.result()
            except (ComboFailed, OSError, ValueError, KeyError) as err:
                report["failed"][combo.slug] = str(err)
                print(f"FAILED {combo.slug}: {err}", file=sys.stderr, flush=True)
            else:
                state = "resumed" if done[combo].get("resumed") else "done"
                p = done[combo]["methods"]["model"]["precision_at_k"]
                print(f"{state:7s} {combo.slug}: model P@100 {p:.3f}", flush=True)
            flush()
    for dataset in dict.fromkeys(r["dataset"] for r in report["rows"]):
        path = results / f"quality_{name}_{dataset}.png"
        plot_dataset([r for r in report["rows"] if r["dataset"] == dataset], path)
        report["plots"][dataset] = str(
            path.relative_to(REPO) if path.is_relative_to(REPO) else path
        )
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    flush()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--name", required=True, help="results go to benchmarks/results/quality_NAME")
    data = ap.add_mutually_exclusive_group(required=True)
    data.add_argument("--data", nargs="+", help="dataset paths")
    data.add_argument("--suite", action="store_true",
                      help=f"the development suite under --data-root ({', '.join(SUITE)}) at "
                           "32 bits with every --seeds and 64 bits with the first")  # fmt: skip
    ap.add_argument("--sets", nargs="+", choices=tuple(SUITE),
                    help="with --suite: only these sets (default: all seven)")  # fmt: skip
    ap.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                    help="where --suite finds its sets (default %(default)s)")  # fmt: skip
    ap.add_argument("--bits", type=int, nargs="+", default=[32])
    ap.add_argument("--pretrain", nargs="+", default=[DEFAULT], choices=(DEFAULT, *PRETRAIN_MODES),
                    help=f"pretraining modes; '{DEFAULT}' passes no --pretrain flag")  # fmt: skip
    ap.add_argument("--seeds", type=int, nargs="+", default=[0],
                    help="training seeds, one run each (run-to-run spread)")  # fmt: skip
    ap.add_argument("--config", help="JSON training settings passed to every `bitseek train`")
    ap.add_argument("--jobs", type=int, default=1, help="combinations run at once (2 on 2 cores)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per CLI process")
    ap.add_argument("--force", action="store_true", help="rerun combinations already finished")
    ap.add_argument("--finished-only", action="store_true",
                    help="train nothing: the table and JSON of the combinations already finished "
                         "(e.g. rows of several sweeps under one --name)")  # fmt: skip
    ap.add_argument("--scratch", type=Path, default=DEFAULT_SCRATCH,
                    help="models and logs go to SCRATCH/NAME/ (default %(default)s)")  # fmt: skip
    ap.add_argument("--results", type=Path, default=RESULTS, help="default %(default)s")
    ap.add_argument("--bitseek", default=os.path.relpath(REPO / ".venv" / "bin" / "bitseek"),
                    help="bitseek executable (default %(default)s)")  # fmt: skip
    args = ap.parse_args(argv)
    if args.jobs < 1 or args.threads < 1:
        ap.error("--jobs and --threads must be at least 1")
    if args.force and args.finished_only:
        ap.error("--force reruns what --finished-only only reads: choose one")
    if args.sets and not args.suite:
        ap.error("--sets chooses among the suite's sets: use it with --suite")
    if (args.scratch.resolve()).is_relative_to(REPO):
        ap.error(f"--scratch {args.scratch} is inside the repository; models must go elsewhere")
    if args.suite:
        combos = suite_combos(args.data_root, args.seeds, args.sets)
    else:
        combos = [Combo(d, b, p, s) for d in args.data for b in args.bits for p in args.pretrain
                  for s in args.seeds]  # fmt: skip
    sweep = Sweep(args.bitseek, args.scratch / args.name, args.config, args.threads)
    if args.finished_only:
        combos = [c for c in combos if (sweep.scratch / c.slug / "row.json").exists()]
    report = run_sweep(combos, sweep, name=args.name, results=args.results, jobs=args.jobs,
                       force=args.force, command=sweep_command(argv))  # fmt: skip
    print()
    print(markdown_tables(report["rows"]))
    print()
    print(suite_table(report["suite"]))
    print(f"\nwrote {args.results / f'quality_{args.name}.json'}; plots: {report['plots']}")
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
