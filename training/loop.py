"""The one training loop: epochs of shuffled minibatches, each handed to a learner's `step`.

Pretraining's shallow learners, fine-tuning and the denoiser differ only in what one step does
(a gradient step on a loss, a CD-1 update, ...), so each is a `Learner` that owns its update rule
and `fit` owns everything else: the shuffling, reading the rows onto the device, progress events
and the per-epoch mean loss.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Protocol, TypeAlias

import numpy as np
import scipy.sparse as sp
import torch

from training import distributed
from training.progress import EpochReporter, Progress

LOG = logging.getLogger(__name__)
Matrix: TypeAlias = np.ndarray | sp.csr_matrix
# steps an epoch at least, by smaller batches on small sets: fewer left TMC's codes below PCA-ITQ
MIN_STEPS_PER_EPOCH = 64
MIN_BATCH = 32  # fine-tuning's balance and decorrelation terms are batch statistics


def batch_size_for(n: int, batch_size: int) -> int:
    """The configured batch size, shrunk so an epoch over n items has MIN_STEPS_PER_EPOCH steps,
    but not below MIN_BATCH."""
    return max(1, min(batch_size, max(MIN_BATCH, n // MIN_STEPS_PER_EPOCH)))


def rows(m: Matrix, idx: np.ndarray, device: str) -> torch.Tensor:
    """Rows ``idx`` of a dense or CSR matrix as a dense float32 tensor on ``device``."""
    block = m[idx]
    dense = block.toarray() if sp.issparse(block) else block
    return torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)).to(device)


def total_steps(n: int, batch_size: int, epochs: int) -> int:
    """Minibatches in ``epochs`` passes over n items (at least 1: a decay horizon)."""
    return max(1, epochs * math.ceil(n / batch_size))


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


class Batch:
    """One minibatch: its row numbers ``idx`` in the training set and, read on first use (not every
    learner needs the target), their inputs and targets as tensors on the training device.

    In data-parallel training ``idx`` is this process's ``part`` of the ``drawn`` rows of the
    minibatch every process drew (`training.distributed.shard`); a learner that draws random
    numbers per row draws ``drawn`` of them and keeps its ``part``, so all ranks stay in step.
    """

    def __init__(
        self, epoch: int, idx: np.ndarray, x: Matrix, target: Matrix, device: str,
        part: slice = slice(None),
    ) -> None:  # fmt: skip
        self.epoch = epoch  # 0-based
        self.drawn = len(idx)
        self.part = part
        self.idx = idx[part]
        self.device = device
        self._x, self._target = x, target

    @cached_property
    def x(self) -> torch.Tensor:  # (B, in)
        return rows(self._x, self.idx, self.device)

    @cached_property
    def target(self) -> torch.Tensor:  # (B, in)
        return rows(self._target, self.idx, self.device)


class Learner(Protocol):
    def step(self, batch: Batch) -> float:
        """Update the parameters on one minibatch; returns its mean loss before the update."""
        ...


class GradientStep:
    """Adam on a loss; with ``decay_steps``, the learning rate decays from ``lr`` to 0 over that
    many steps along half a cosine."""

    def __init__(
        self, params: Iterable[torch.nn.Parameter], lr: float, decay_steps: int | None = None
    ) -> None:
        self.optimiser = torch.optim.Adam(params, lr=lr)
        self.schedule = (
            None
            if decay_steps is None
            else torch.optim.lr_scheduler.LambdaLR(
                self.optimiser, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(decay_steps, 1)))
            )
        )
        self.taken = 0

    def __call__(self, loss: torch.Tensor | None) -> float:
        """One step down ``loss``; returns its value."""
        assert loss is not None, "the model returns a loss only when given a target"
        self.optimiser.zero_grad(set_to_none=True)
        loss.backward()
        self.optimiser.step()
        if self.schedule is not None:
            self.schedule.step()
        self.taken += 1
        return float(loss.item())


def fit(
    learner: Learner,
    x: Matrix,
    target: Matrix,
    *,
    epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    device: str,
    stage: str,
    progress: Progress | None = None,
) -> list[float]:
    """Train ``learner`` for ``epochs`` passes over the rows of x (n, in), in minibatches of
    ``batch_size`` drawn by ``rng``; ``target`` (n, ...) is what its rows should rebuild.

    ``stage`` names the loop in progress events and logs. Returns each epoch's mean loss.
    """
    n = x.shape[0]
    reporter = EpochReporter(progress, stage, epochs, math.ceil(n / batch_size))
    history: list[float] = []
    for epoch in range(epochs):
        reporter.start_epoch()
        for idx in minibatches(n, batch_size, rng):
            batch = Batch(epoch, idx, x, target, device, distributed.shard(len(idx)))
            loss = learner.step(batch)
            reporter.step(epoch, loss, len(batch.idx))
        history.append(distributed.mean(reporter.end_epoch(epoch)))
        LOG.info("%s epoch %d/%d: loss %.4f", stage, epoch + 1, epochs, history[-1])
    return history
