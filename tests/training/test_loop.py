import numpy as np
import pytest
import scipy.sparse as sp
import torch

from training.loop import Batch, GradientStep, batch_size_for, fit, total_steps


class Recorder:
    """A learner that remembers what it was handed; its loss is the batch's first input column."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def step(self, batch: Batch) -> float:
        self.batches.append(batch)
        return float(batch.x[:, 0].mean())


def test_fit_visits_every_row_once_an_epoch_and_returns_the_epochs_mean_loss() -> None:
    x = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    learner, events = Recorder(), []
    history = fit(learner, x, x, epochs=2, batch_size=4, rng=np.random.default_rng(0),
                  device="cpu", stage="test", progress=events.append)  # fmt: skip
    assert [b.epoch for b in learner.batches] == [0, 0, 0, 1, 1, 1]
    for epoch in (0, 1):
        seen = np.concatenate([b.idx for b in learner.batches if b.epoch == epoch])
        assert sorted(seen) == list(range(10))
    assert history == pytest.approx([4.5, 4.5])  # item-weighted mean of the rows' values
    assert events[-1]["stage"] == "test" and events[-1]["epoch"] == 2


def test_a_batch_reads_rows_of_dense_or_sparse_matrices_on_first_use() -> None:
    x = np.arange(12, dtype=np.float64).reshape(4, 3)
    batch = Batch(0, np.array([2, 0]), x, sp.csr_matrix(x), "cpu")
    assert batch.x.dtype == torch.float32
    torch.testing.assert_close(batch.x, torch.tensor(x[[2, 0]], dtype=torch.float32))
    torch.testing.assert_close(batch.target, batch.x)


def test_gradient_step_decays_the_learning_rate_to_zero_along_half_a_cosine() -> None:
    w = torch.nn.Parameter(torch.ones(2))
    descend = GradientStep([w], lr=0.1, decay_steps=4)
    rates = []
    for _ in range(4):
        rates.append(descend.optimiser.param_groups[0]["lr"])
        loss = descend((w**2).sum())
        assert loss > 0
    assert rates == pytest.approx([0.1, 0.1 * (1 + 2**-0.5) / 2, 0.05, 0.1 * (1 - 2**-0.5) / 2])
    assert descend.optimiser.param_groups[0]["lr"] == pytest.approx(0.0)
    assert descend.taken == 4


def test_total_steps_is_a_positive_decay_horizon() -> None:
    assert total_steps(10, 4, 2) == 6
    assert total_steps(10, 4, 0) == 1


def test_batches_shrink_only_for_small_training_sets() -> None:
    assert batch_size_for(60_000, 128) == 128  # large sets keep the configured batch
    assert batch_size_for(11_314, 128) == 128
    small = batch_size_for(2_847, 128)
    assert 32 <= small < 128 and 2_847 // small >= 64  # at least 64 steps an epoch
    assert batch_size_for(100, 128) == 32  # never below 32: batch statistics need rows
    assert batch_size_for(100, 16) == 16  # never above what was asked for
