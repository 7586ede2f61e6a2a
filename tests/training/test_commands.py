import argparse
import json

import numpy as np
import pytest

from training.commands import register


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bitseek")
    register(parser.add_subparsers(dest="command"))
    return parser


def _run(*argv: str) -> int:
    args = _parser().parse_args(list(argv))
    return args.handler(args)


@pytest.fixture
def vectors(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 10)).astype(np.float32)
    path = tmp_path / "vecs.npy"
    np.save(path, x)
    return path, x


def test_train_then_encode_writes_packed_codes_in_input_order(tmp_path, vectors, capsys) -> None:
    path, x = vectors
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"hidden_dims": [16], "neighbours": 3, "pretrain_epochs": 1}))
    model_dir = tmp_path / "model"
    rc = _run("train", "--data", str(path), "--bits", "16", "--out", str(model_dir),
              "--config", str(cfg), "--epochs", "1", "--pretrain", "rbm", "--quiet")  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "16-bit vector model" in capsys.readouterr().out
    config = json.loads((model_dir / "config.json").read_text())
    assert config["train"]["pretrain"] == "rbm" and config["train"]["epochs"] == 1
    out = tmp_path / "codes.npy"
    assert _run("encode", "--model", str(model_dir), "--data", str(path), "--out", str(out)) == 0
    codes = np.load(out)
    assert codes.shape == (60, 2) and codes.dtype == np.uint8
    from training.artifact import load_model

    np.testing.assert_array_equal(codes, load_model(model_dir).encode(x))
    # rows in input order: encoding a reversed copy reverses the rows
    np.testing.assert_array_equal(load_model(model_dir).encode(x[::-1].copy()), codes[::-1])


def test_bad_config_and_missing_split_exit_with_a_message(tmp_path, vectors, capsys) -> None:
    path, _ = vectors
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"bits": 12}))
    assert (
        _run("train", "--data", str(path), "--out", str(tmp_path / "m"), "--config", str(cfg)) == 2
    )
    assert "multiple of 8" in capsys.readouterr().err
    rc = _run("train", "--data", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "m"))
    assert rc == 2 and "missing.npy" in capsys.readouterr().err
    rc = _run("encode", "--model", str(tmp_path / "none"), "--data", str(path), "--out", "x.npy")
    assert rc == 2 and "no model directory" in capsys.readouterr().err


def test_encode_test_split_of_data_without_one_is_an_error(tmp_path, vectors, capsys) -> None:
    path, _ = vectors
    model_dir = tmp_path / "m"
    rc = _run("train", "--data", str(path), "--bits", "8", "--out", str(model_dir),
              "--epochs", "1", "--pretrain", "none", "--quiet")  # fmt: skip
    assert rc == 0
    rc = _run("encode", "--model", str(model_dir), "--data", str(path), "--split", "test",
              "--out", str(tmp_path / "c.npy"))  # fmt: skip
    assert rc == 2 and "no test split" in capsys.readouterr().err


@pytest.fixture
def restore_threads():
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_train_applies_threads_and_records_the_run_in_metrics(
    tmp_path, vectors, capsys, monkeypatch, restore_threads
) -> None:
    import torch

    import training.train

    path, _ = vectors
    seen: list[int] = []
    real_train = training.train.train

    def spy(dataset, config, progress=None):  # the thread count in force while training runs
        seen.append(torch.get_num_threads())
        return real_train(dataset, config, progress)

    monkeypatch.setattr(training.train, "train", spy)
    model_dir = tmp_path / "m"
    rc = _run("train", "--data", str(path), "--bits", "8", "--out", str(model_dir),
              "--epochs", "1", "--pretrain", "none", "--threads", "2", "--quiet")  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert seen == [2]
    assert "2 torch thread(s)" in capsys.readouterr().out
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["torch_threads"] == 2 and metrics["data"] == str(path)
    assert metrics["command"] == (
        f"bitseek train --data {path} --bits 8 --out {model_dir} --pretrain none --epochs 1 "
        "--threads 2 --quiet"
    )
    assert metrics["wall_seconds"] >= metrics["train_seconds"] > 0


def test_train_defaults_to_one_thread_and_rejects_zero(
    tmp_path, vectors, capsys, restore_threads
) -> None:
    path, _ = vectors
    model_dir = tmp_path / "m"
    rc = _run("train", "--data", str(path), "--bits", "8", "--out", str(model_dir),
              "--epochs", "1", "--pretrain", "none", "--quiet")  # fmt: skip
    assert rc == 0
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["torch_threads"] == 1 and "--threads" not in metrics["command"]
    with pytest.raises(SystemExit) as exit_:
        _run("train", "--data", str(path), "--out", str(model_dir), "--threads", "0")
    assert exit_.value.code == 2 and "at least 1" in capsys.readouterr().err
