import argparse
import json

import numpy as np
import pytest

from tests.conftest import FakeModel
from training.artifact import record_evaluation
from training.commands import register
from training.config import TrainConfig
from training.data import Dataset, DatasetError, Split
from training.evaluate import (
    HOLDOUT_QUERIES,
    THROUGHPUT_BATCH,
    encode_batched,
    evaluate_baselines,
    evaluate_model,
    format_table,
    plot_pr_curves,
    queries_and_database,
)
from training.train import train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def blob_images(n, seed, n_classes=4):
    """8x8 uint8 images: one bright quadrant-ish blob per class plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    templates = np.zeros((n_classes, 8, 8))
    for c in range(n_classes):
        templates[c, (c // 2) * 4 : (c // 2) * 4 + 4, (c % 2) * 4 : (c % 2) * 4 + 4] = 200
    x = templates[y] + rng.normal(0, 30, (n, 8, 8))
    return x.clip(0, 255).astype(np.uint8), np.eye(n_classes, dtype=np.uint8)[y]


def image_dataset(n_train=300, n_test=60, with_test=True, labelled=True):
    x, y = blob_images(n_train + n_test, seed=0)
    train_split = Split(
        x[:n_train], [f"tr{i}" for i in range(n_train)], y[:n_train] if labelled else None
    )
    test_split = Split(x[n_train:], [f"te{i}" for i in range(n_test)], y[n_train:])
    return Dataset("image", train_split, test_split if with_test else None, list("abcd"), "blobs")


def parse(argv):
    parser = argparse.ArgumentParser(prog="bitseek")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_model_and_all_baselines_are_scored_on_the_same_split():
    evaluation = evaluate_model(FakeModel("image", 16, (8, 8)), image_dataset())
    assert list(evaluation.methods) == ["model", "lsh", "pca_sign", "pca_itq"]
    assert (evaluation.bits, evaluation.n_queries, evaluation.n_database) == (16, 60, 300)
    for m in evaluation.methods.values():
        assert m.n_queries == 60 and m.n_database == 300 and m.bits == 16
        assert 0.0 <= m.precision_at_k <= 1.0 and 0.0 <= m.mean_average_precision <= 1.0
    # well separated blobs: PCA-ITQ finds them, so it must beat chance (1/4 relevant) clearly
    assert evaluation.methods["pca_itq"].precision_at_k > 0.6
    assert json.loads(json.dumps(evaluation.to_dict()))["methods"]["model"]["bits"] == 16


def test_without_a_test_split_a_seeded_holdout_queries_the_rest():
    dataset = image_dataset(n_train=200, with_test=False)
    queries, database = queries_and_database(dataset, seed=1)
    assert len(queries) == min(HOLDOUT_QUERIES, 20) and len(database) == 180
    assert not set(queries.ids) & set(database.ids)
    again, _ = queries_and_database(dataset, seed=1)
    assert again.ids == queries.ids
    # rows keep their labels
    row = dataset.train.ids.index(queries.ids[0])
    np.testing.assert_array_equal(queries.labels[0], dataset.train.labels[row])


def test_unlabelled_data_is_rejected_with_the_split_named():
    with pytest.raises(DatasetError, match="train \\(database\\) split has no labels"):
        queries_and_database(image_dataset(labelled=False))


def test_baselines_that_cannot_run_are_skipped_with_a_reason():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 12)).astype(np.float32)
    labels = np.eye(3, dtype=np.uint8)[rng.integers(0, 3, 100)]
    results, skipped, _ = evaluate_baselines(x[20:], x[:20], labels[20:], labels[:20], 16)
    assert set(results) == {"lsh"}
    assert set(skipped) == {"pca_sign", "pca_itq"} and "exceeds" in skipped["pca_itq"]


def test_table_and_plot(tmp_path):
    evaluation = evaluate_model(FakeModel("image", 8, (8, 8)), image_dataset(150, 30))
    table = format_table(evaluation)
    for name in ("model", "lsh", "pca_sign", "pca_itq", "P@100", "mAP@150"):
        assert name in table
    plot = tmp_path / "sub" / "pr.png"
    plot_pr_curves(evaluation, plot)
    assert plot.read_bytes()[:8] == PNG_MAGIC


def test_batched_encoding_matches_one_call_and_reports_a_rate():
    model = FakeModel("image", 16, (8, 8))
    x, _ = blob_images(THROUGHPUT_BATCH * 2 + 7, seed=1)  # a ragged last batch
    codes, rate = encode_batched(model, x)
    np.testing.assert_array_equal(codes, model.encode(x))
    assert rate > 0
    texts = [f"doc {i} about topic {i % 3}" for i in range(300)]
    text_model = FakeModel("text", 8, ())
    codes, _ = encode_batched(text_model, texts, batch=64)
    np.testing.assert_array_equal(codes, text_model.encode(texts))
    with pytest.raises(ValueError, match="zero items"):
        encode_batched(model, x[:0])


def test_record_evaluation_keeps_other_entries_and_leaves_no_temp_files(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"n_train": 5, "evaluation": {"a": 1}}))
    record_evaluation(tmp_path, "b", {"bits": 16})
    record_evaluation(tmp_path, "a", {"bits": 32})  # same dataset again: replaced
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {"n_train": 5, "evaluation": {"a": {"bits": 32}, "b": {"bits": 16}}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="metrics.json: not valid JSON"):
        record_evaluation(tmp_path, "c", {})
    assert (tmp_path / "metrics.json").read_text() == "{not json"  # untouched on failure


METRIC_KEYS = {
    "precision_at_k", "mean_average_precision", "precision_within_radius",
    "recall_within_radius", "empty_within_radius", "k", "map_depth", "radius",
}  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A real 16-bit model trained on 200 blob images, and the .npz it came from."""
    root = tmp_path_factory.mktemp("evaluate-cli")
    x, y = blob_images(240, seed=3)
    np.savez(root / "blobs.npz", x_train=x[:200], y_train=y[:200].argmax(1),
             x_test=x[200:], y_test=y[200:].argmax(1))  # fmt: skip
    config = TrainConfig(
        bits=16, hidden_dims=(32,), epochs=2, pretrain_epochs=1, neighbours=0, batch_size=50
    )
    from training.data import load_dataset

    train(load_dataset(root / "blobs.npz"), config).save(root / "model")
    return root / "model", root / "blobs.npz"


@pytest.mark.slow
def test_cli_evaluates_a_trained_model_end_to_end(trained, tmp_path, capsys):
    model_dir, data = trained
    args = parse([
        "evaluate", "--model", str(model_dir), "--data", str(data),
        "--json", "--out", str(tmp_path / "res" / "r.json"),
    ])  # fmt: skip
    assert args.handler(args) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "res" / "r.json").read_text())
    assert printed == saved
    assert saved["command"] == (
        f"bitseek evaluate --model {model_dir} --data {data} --json --out {tmp_path}/res/r.json"
    )
    assert (saved["model"], saved["data"]) == (str(model_dir), str(data))
    assert saved["created_at"].endswith("+00:00") and saved["evaluate_seconds"] > 0
    assert saved["torch_threads"] == 1 and saved["encode_items_per_second"] > 0
    assert set(saved["methods"]) == {"model", "lsh", "pca_sign", "pca_itq"}
    for m in saved["methods"].values():
        assert METRIC_KEYS <= set(m) and (m["k"], m["radius"]) == (100, 2)
    assert saved["n_queries"] == 40 and saved["bits"] == 16
    curve = saved["methods"]["model"]["pr_curve"]
    assert len(curve["radius"]) == 17 and curve["recall"][-1] == pytest.approx(1.0)
    # no --plot: the PNG goes next to --out
    assert saved["plot"] == str(tmp_path / "res" / "r.png")
    assert (tmp_path / "res" / "r.png").read_bytes()[:8] == PNG_MAGIC
    # the model directory now carries the evaluation, keyed by the dataset's absolute path
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert "train_seconds" in metrics  # training metrics kept
    entry = metrics["evaluation"][str(data.resolve())]
    assert entry["command"] == saved["command"] and entry["created_at"] == saved["created_at"]
    for name, m in entry["methods"].items():
        assert "pr_curve" not in m  # the summary stays small; the curves are in --out
        assert m["precision_at_k"] == saved["methods"][name]["precision_at_k"]


@pytest.mark.slow
def test_cli_without_out_plots_into_the_model_dir_and_keeps_earlier_entries(trained, capsys):
    model_dir, data = trained
    copy = data.with_name("blobs_copy.npz")
    copy.write_bytes(data.read_bytes())
    for path in (data, copy):
        args = parse(["evaluate", "--model", str(model_dir), "--data", str(path)])
        assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert "P@100" in out and f"plot: {model_dir / 'pr_blobs_copy.png'}" in out
    assert (model_dir / "pr_blobs_copy.png").read_bytes()[:8] == PNG_MAGIC
    evaluations = json.loads((model_dir / "metrics.json").read_text())["evaluation"]
    assert {str(data.resolve()), str(copy.resolve())} <= set(evaluations)
    from training.artifact import load_model

    assert load_model(model_dir).bits == 16  # extra files do not break the model


@pytest.mark.slow
def test_cli_still_reports_when_the_model_dir_cannot_be_updated(trained, monkeypatch, capsys):
    import training.evaluate as evaluate

    def read_only(*_):
        raise PermissionError(13, "Permission denied", "metrics.json")

    monkeypatch.setattr(evaluate, "record_evaluation", read_only)
    model_dir, data = trained
    args = parse(["evaluate", "--model", str(model_dir), "--data", str(data), "--json"])
    assert args.handler(args) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["bits"] == 16
    assert (
        "warning: evaluation not recorded" in captured.err and "Permission denied" in captured.err
    )


@pytest.mark.slow
def test_cli_names_the_missing_model_or_data_path(trained, tmp_path, capsys):
    model_dir, data = trained
    args = parse(["evaluate", "--model", str(tmp_path / "none"), "--data", str(data)])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitseek evaluate: error:") and str(tmp_path / "none") in err
    args = parse(["evaluate", "--model", str(model_dir), "--data", str(tmp_path / "x.npz")])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitseek evaluate: error:") and str(tmp_path / "x.npz") in err


def test_cli_rejects_a_non_png_plot_and_bad_threads(capsys):
    args = parse(["evaluate", "--model", "m", "--data", "d", "--plot", "out.jpg"])
    assert args.handler(args) == 2
    assert ".png" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        parse(["evaluate", "--model", "m", "--data", "d", "--threads", "0"])
    assert exit_.value.code == 2 and "at least 1" in capsys.readouterr().err
