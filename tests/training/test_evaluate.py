import argparse
import json

import numpy as np
import pytest

from tests.conftest import FakeModel
from training.config import TrainConfig
from training.data import Dataset, DatasetError, Split
from training.evaluate import (
    HOLDOUT_QUERIES,
    evaluate_baselines,
    evaluate_model,
    format_table,
    plot_pr_curves,
    queries_and_database,
    register,
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


@pytest.mark.slow
def test_cli_evaluates_a_trained_model_end_to_end(tmp_path, capsys):
    x, y = blob_images(240, seed=3)
    np.savez(tmp_path / "blobs.npz", x_train=x[:200], y_train=y[:200].argmax(1),
             x_test=x[200:], y_test=y[200:].argmax(1))  # fmt: skip
    config = TrainConfig(
        bits=16, hidden_dims=(32,), epochs=2, pretrain_epochs=1, neighbours=0, batch_size=50
    )
    from training.data import load_dataset

    train(load_dataset(tmp_path / "blobs.npz"), config).save(tmp_path / "model")
    args = parse([
        "evaluate", "--model", str(tmp_path / "model"), "--data", str(tmp_path / "blobs.npz"),
        "--json", "--plot", str(tmp_path / "pr.png"), "--out", str(tmp_path / "r.json"),
    ])  # fmt: skip
    assert args.handler(args) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "r.json").read_text())
    assert printed == saved
    assert saved["command"].startswith("bitseek evaluate --model")
    assert set(saved["methods"]) == {"model", "lsh", "pca_sign", "pca_itq"}
    assert saved["n_queries"] == 40 and saved["bits"] == 16
    curve = saved["methods"]["model"]["pr_curve"]
    assert len(curve["radius"]) == 17 and curve["recall"][-1] == pytest.approx(1.0)
    assert (tmp_path / "pr.png").read_bytes()[:8] == PNG_MAGIC


def test_cli_reports_bad_paths_without_a_traceback(tmp_path, capsys):
    args = parse(["evaluate", "--model", str(tmp_path / "none"), "--data", str(tmp_path / "x.npz")])
    assert args.handler(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bitseek evaluate: error:") and "x.npz" in err
    args = parse(["evaluate", "--model", "m", "--data", "d", "--plot", "out.jpg"])
    assert args.handler(args) == 2
    assert ".png" in capsys.readouterr().err
