import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import quality
from tests.training.test_evaluate import PNG_MAGIC, blob_images

METRIC_KEYS = {
    "precision_at_k", "mean_average_precision", "precision_within_radius",
    "recall_within_radius", "pr_curve",
}  # fmt: skip
BITSEEK = Path(sys.executable).with_name("bitseek")


@pytest.fixture
def blobs(tmp_path):
    x, y = blob_images(240, seed=5)
    path = tmp_path / "blobs.npz"
    np.savez(path, x_train=x[:200], y_train=y[:200].argmax(1),
             x_test=x[200:], y_test=y[200:].argmax(1))  # fmt: skip
    config = tmp_path / "small.json"  # a tiny network: the sweep's plumbing is under test
    config.write_text(json.dumps({"hidden_dims": [32], "epochs": 2, "pretrain_epochs": 1,
                                  "neighbours": 0, "batch_size": 50}))  # fmt: skip
    return path, config


def _never(argv, log):
    raise AssertionError(f"a finished combination ran again: {argv}")


@pytest.mark.slow
@pytest.mark.skipif(not BITSEEK.exists(), reason="needs the installed bitseek command")
def test_sweep_runs_the_real_cli_and_resumes_without_rerunning(blobs, tmp_path, capsys):
    data, config = blobs
    scratch, results = tmp_path / "scratch", tmp_path / "results"
    rc = quality.main([
        "--name", "tiny", "--data", str(data), "--bits", "16", "--config", str(config),
        "--scratch", str(scratch), "--results", str(results), "--bitseek", str(BITSEEK),
    ])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "| blobs | 16 | autoencoder |" in capsys.readouterr().out
    report = json.loads((results / "quality_tiny.json").read_text())
    assert report["failed"] == {} and "benchmarks/quality.py --name tiny" in report["command"]
    (row,) = report["rows"]
    model_dir = scratch / "tiny" / "blobs-16-default" / "model"
    assert row["train_command"] == shlex.join([
        str(BITSEEK), "train", "--data", str(data), "--bits", "16", "--out", str(model_dir),
        "--config", str(config),
    ])  # fmt: skip
    assert row["evaluate_command"].startswith(f"{BITSEEK} evaluate --model {model_dir} --data ")
    assert "--json --out" in row["evaluate_command"]
    assert (row["bits"], row["pretrain"], row["torch_threads"]) == (16, "autoencoder", 1)
    assert row["train_wall_seconds"] >= row["train_seconds"] > 0
    assert row["train_peak_rss_bytes"] > 50e6  # torch alone is more: it is the child's, measured
    assert 0 < row["cosine_knn_precision_at_k"] <= 1
    assert row["encode_items_per_second"] > 0 and row["n_queries"] == 40
    assert set(row["methods"]) == {"model", "lsh", "pca_sign", "pca_itq"}
    for m in row["methods"].values():
        assert METRIC_KEYS <= set(m) and 0 <= m["precision_at_k"] <= 1
    assert (results / "quality_tiny_blobs.png").read_bytes()[:8] == PNG_MAGIC
    assert Path(row["plot"]).read_bytes()[:8] == PNG_MAGIC  # the per-run plot of `evaluate`

    again = quality.run_sweep(
        [quality.Combo(str(data), 16)],
        quality.Sweep(str(BITSEEK), scratch / "tiny", str(config)),
        name="tiny",
        results=results,
        runner=_never,
    )
    (resumed,) = again["rows"]
    assert resumed.pop("resumed") is True and resumed == row
    # the table of what is finished, training nothing (seed 1 never ran, so it is left out)
    rc = quality.main([
        "--name", "tiny", "--data", str(data), "--bits", "16", "--seeds", "0", "1",
        "--scratch", str(scratch), "--results", str(results), "--finished-only",
    ])  # fmt: skip
    assert rc == 0
    report = json.loads((results / "quality_tiny.json").read_text())
    assert [(r["bits"], r["seed"]) for r in report["rows"]] == [(16, 0)]


def test_a_failing_combination_is_reported_and_not_marked_done(tmp_path, capsys):
    calls = []

    def failing(argv, log):
        calls.append(argv)
        log.write_text("error: something named in the log\n")
        return 2

    combos = [quality.Combo("data/x.npz", 8, "rbm")]
    sweep = quality.Sweep("bitseek", tmp_path / "scratch", threads=2)
    report = quality.run_sweep(combos, sweep, name="f", results=tmp_path, runner=failing)
    assert calls == [["bitseek", "train", "--data", "data/x.npz", "--bits", "8", "--out",
                      str(tmp_path / "scratch" / "x-8-rbm" / "model"), "--pretrain", "rbm",
                      "--threads", "2"]]  # fmt: skip
    assert report["rows"] == [] and "something named in the log" in report["failed"]["x-8-rbm"]
    assert json.loads((tmp_path / "quality_f.json").read_text())["failed"] == report["failed"]
    assert not (tmp_path / "scratch" / "x-8-rbm" / "row.json").exists()
    assert "FAILED x-8-rbm" in capsys.readouterr().err


def test_scratch_inside_the_repo_and_unknown_modes_are_refused(capsys):
    with pytest.raises(SystemExit):
        quality.main(["--name", "n", "--data", "d", "--scratch", str(quality.REPO / "models")])
    assert "inside the repository" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        quality.main(["--name", "n", "--data", "d", "--pretrain", "bogus"])
    assert "invalid choice" in capsys.readouterr().err


def test_markdown_table_has_a_row_per_combination_and_baselines_once():
    def row(pretrain, p):
        methods = {name: {"precision_at_k": p, "mean_average_precision": p,
                          "precision_within_radius": p, "recall_within_radius": p}
                   for name in ("model", "lsh", "pca_itq")}  # fmt: skip
        return {"dataset": "d", "bits": 32, "pretrain": pretrain, "methods": methods,
                "skipped": {"pca_sign": "too few"}, "train_wall_seconds": 3.0,
                "encode_items_per_second": 1000.0}  # fmt: skip

    text = quality.markdown_tables([row("none", 0.5), row("rbm", 0.25)])
    assert "| d | 32 | none | 0.500 |" in text and "| d | 32 | rbm | 0.250 |" in text
    assert text.count("| d | 32 | lsh |") == 1 and "pca_sign | skipped: too few" in text


def test_seeds_are_passed_to_train_and_their_spread_is_summarised(tmp_path):
    calls = []

    def failing(argv, log):
        calls.append(argv)
        return 2

    combo = quality.Combo("data/x.npz", 8, seed=3)
    quality.run_sweep([combo], quality.Sweep("bitseek", tmp_path), name="s", results=tmp_path,
                      runner=failing)  # fmt: skip
    assert calls[0][-2:] == ["--seed", "3"] and combo.slug == "x-8-default-seed3"
    assert quality.Combo("data/x.npz", 8).slug == "x-8-default"  # seed 0 is the CLI's default

    def row(seed, p):
        return {"dataset": "d", "bits": 32, "pretrain": "autoencoder", "seed": seed,
                "methods": {"model": {"precision_at_k": p}}}  # fmt: skip

    (spread,) = quality.seed_spread([row(0, 0.70), row(1, 0.74), row(2, 0.72)])
    assert spread["runs"] == 3 and spread["p_at_100_mean"] == pytest.approx(0.72)
    assert spread["p_at_100_std"] == pytest.approx(0.02)
    assert (spread["p_at_100_min"], spread["p_at_100_max"]) == (0.70, 0.74)
    assert quality.seed_spread([row(0, 0.7)]) == []  # one run: no spread to report


def test_suite_runs_every_set_at_both_widths_then_the_other_seeds():
    combos = quality.suite_combos(Path("/data"), [0, 1, 2])
    first = combos[: 2 * len(quality.SUITE)]
    assert {(c.dataset, c.bits, c.seed) for c in first} == {
        (quality.dataset_name(path), bits, 0)
        for path in quality.SUITE.values()
        for bits in (32, 64)
    }
    rest = combos[len(first) :]
    assert {(c.bits, c.seed) for c in rest} == {(32, 1), (32, 2)} and len(rest) == 14
    assert all(c.data.startswith("/data/") for c in combos)
    some = quality.suite_combos(Path("/data"), [0, 1], ["tmc", "mnist"])
    assert [(c.dataset, c.bits, c.seed) for c in some] == [
        ("tmc", 32, 0), ("tmc", 64, 0), ("mnist", 32, 0), ("mnist", 64, 0),
        ("tmc", 32, 1), ("mnist", 32, 1),
    ]  # fmt: skip


def test_suite_summary_averages_seeds_and_takes_the_geometric_mean_of_ratios():
    def row(dataset, seed, p, itq, pixels=None):
        methods = {"model": {"precision_at_k": p}, "pca_itq": {"precision_at_k": itq}}
        return {"dataset": dataset, "bits": 32, "seed": seed, "train_wall_seconds": 10.0,
                "train_peak_rss_bytes": 1e9 + seed, "cosine_knn_precision_at_k": 0.5,
                "pixel_cosine_knn_precision_at_k": pixels, "methods": methods}  # fmt: skip

    summary = quality.suite_summary(
        [row("a", 0, 0.60, 0.5), row("a", 1, 0.64, 0.5), row("b", 0, 0.4, 0.5, pixels=0.2)]
    )
    a, b = sorted(summary["entries"], key=lambda e: e["dataset"])
    assert a["ratio_pixel_cosine_knn"] is None and b["ratio_pixel_cosine_knn"] == pytest.approx(2)
    assert a["model_p_at_100"] == pytest.approx(0.62) and a["seeds"] == [0, 1]
    assert a["model_std"] == pytest.approx(0.0283, abs=1e-4) and b["model_std"] is None
    assert a["ratio_pca_itq"] == pytest.approx(1.24) and a["train_peak_rss_bytes"] == 1e9 + 1
    geo = summary["geometric_mean"]["32"]
    assert geo["geometric_mean_ratio_pca_itq"] == pytest.approx((1.24 * 0.8) ** 0.5, abs=1e-4)
    assert geo["min_ratio_pca_itq"] == 0.8
    assert "geometric mean of model / PCA-ITQ over 2 sets" in quality.suite_table(summary)
