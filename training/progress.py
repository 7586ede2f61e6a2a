"""Progress events for long training loops: the running loss within an epoch, at most every
``interval`` seconds and at each epoch's end, so a bar or a job status moves during long epochs.

An event is a dict {"stage", "epoch", "epochs", "step", "steps", "loss"}: ``step`` of ``steps``
minibatches done in epoch ``epoch`` (1-based) of ``epochs``, ``loss`` the epoch's mean so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Progress = Callable[[dict[str, Any]], None]
INTERVAL_SECONDS = 0.5  # often enough for a live bar, rare enough for a job-status queue


class EpochReporter:
    def __init__(
        self, progress: Progress | None, stage: str, epochs: int, steps: int,
        interval: float = INTERVAL_SECONDS,
    ) -> None:  # fmt: skip
        self.progress = progress
        self.stage = stage
        self.epochs = epochs
        self.steps = max(1, steps)
        self.interval = interval
        self._last = time.monotonic()
        self._total = 0.0
        self._count = 0
        self._step = 0

    def start_epoch(self) -> None:
        self._total, self._count, self._step = 0.0, 0, 0

    def step(self, epoch: int, loss: float, n_items: int) -> None:
        """After one minibatch of ``n_items`` items with mean loss ``loss`` (epoch 0-based)."""
        self._total += loss * n_items
        self._count += n_items
        self._step += 1
        now = time.monotonic()
        if self.progress is not None and now - self._last >= self.interval:
            self._last = now
            self._emit(epoch)

    def end_epoch(self, epoch: int) -> float:
        """The epoch's mean loss; always reported."""
        self._step = self.steps
        if self.progress is not None:
            self._emit(epoch)
        return self.mean

    @property
    def mean(self) -> float:
        return self._total / max(self._count, 1)

    def _emit(self, epoch: int) -> None:
        assert self.progress is not None
        self.progress({"stage": self.stage, "epoch": epoch + 1, "epochs": self.epochs,
                       "step": min(self._step, self.steps), "steps": self.steps,
                       "loss": round(self.mean, 5)})  # fmt: skip
