"""Data-parallel training (training/distributed.py): the sharding rule in-process, then real
two-process gloo runs through `bitseek train --nproc 2` and torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.test_commands import _run
from training import distributed
from training.artifact import load_model
from training.loop import Batch

ROOT = Path(__file__).resolve().parents[2]


def test_single_process_is_untouched() -> None:
    model = torch.nn.Linear(3, 2)
    assert not distributed.active() and distributed.world_size() == 1
    assert distributed.shard(7) == slice(None) and distributed.wrap(model) is model
    assert distributed.share(lambda: 41) + 1 == 42 and distributed.mean(0.5) == 0.5
    assert distributed.rank_seed(5) == 5


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_every_minibatch_exactly(monkeypatch: pytest.MonkeyPatch, world: int) -> None:
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    for n in range(1, 12):
        idx = np.random.default_rng(n).permutation(100)[:n]
        parts = []
        for r in range(world):
            monkeypatch.setattr(distributed, "rank", lambda r=r: r)
            parts.append(Batch(0, idx, idx[:, None], idx[:, None], "cpu", distributed.shard(n)))
        got = np.concatenate([p.idx for p in parts])
        assert all(p.drawn == n for p in parts)
        if n < world:  # every rank steps on the whole, so the averaged gradient is its gradient
            assert all(np.array_equal(p.idx, idx) for p in parts)
        else:  # disjoint parts that cover the minibatch
            assert sorted(got.tolist()) == sorted(idx.tolist())


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(200, 12)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    cfg = {"hidden_dims": [16], "neighbours": 3, "pretrain_epochs": 1, "denoiser_epochs": 1,
           "denoiser_hidden": [16]}  # fmt: skip
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    return tmp_path / "v.npy", tmp_path / "cfg.json", x


def _check_model(model_dir: Path, x: np.ndarray) -> dict:
    model = load_model(model_dir)
    codes = model.encode(x)
    assert codes.shape == (len(x), 2) and codes.dtype == np.uint8
    assert model.denoiser is not None
    return json.loads((model_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_nproc_2_trains_one_model_over_two_gloo_processes(tmp_path: Path, tiny) -> None:
    """RBM pretraining (weights averaged), fine-tuning and the denoiser (DDP); `train` itself
    checks that both ranks end with the same weights and fails otherwise."""
    data, cfg, x = tiny
    out = tmp_path / "model"
    rc = _run("train", "--data", str(data), "--bits", "16", "--out", str(out), "--config",
              str(cfg), "--epochs", "2", "--pretrain", "rbm", "--nproc", "2",
              "--quiet")  # fmt: skip
    assert rc == 0
    metrics = _check_model(out, x)
    assert metrics["processes"] == 2 and "--nproc 2" in metrics["command"]


@pytest.mark.slow
def test_torchrun_runs_the_same_command(tmp_path: Path, tiny) -> None:
    data, cfg, x = tiny
    out = tmp_path / "model"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "-m", "service.cli", "train", "--data", str(data), "--bits", "16", "--out", str(out),
           "--config", str(cfg), "--epochs", "2", "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _check_model(out, x)["processes"] == 2
