from typing import Any

import pytest

from training.progress import EpochReporter


def test_reports_running_mean_within_and_at_the_end_of_epochs() -> None:
    events: list[dict[str, Any]] = []
    reporter = EpochReporter(events.append, "fine-tune", epochs=2, steps=3, interval=0.0)
    for epoch in range(2):
        reporter.start_epoch()
        for loss in (1.0, 2.0, 4.0):
            reporter.step(epoch, loss, n_items=2)
        assert reporter.end_epoch(epoch) == pytest.approx(7 / 3)
    assert [(e["epoch"], e["step"]) for e in events] == [
        (1, 1), (1, 2), (1, 3), (1, 3), (2, 1), (2, 2), (2, 3), (2, 3)
    ]  # fmt: skip
    assert events[1]["loss"] == pytest.approx(1.5)  # weighted mean of the batches so far
    assert all(e["stage"] == "fine-tune" and e["epochs"] == 2 and e["steps"] == 3 for e in events)


def test_throttles_step_events_but_always_reports_epoch_ends() -> None:
    events: list[dict[str, Any]] = []
    reporter = EpochReporter(events.append, "pretrain layer 1", epochs=3, steps=100, interval=3600)
    for epoch in range(3):
        reporter.start_epoch()
        for _ in range(100):
            reporter.step(epoch, 1.0, n_items=1)
        reporter.end_epoch(epoch)
    assert [(e["epoch"], e["step"]) for e in events] == [(1, 100), (2, 100), (3, 100)]


def test_no_callback_still_tracks_the_mean() -> None:
    reporter = EpochReporter(None, "fine-tune", epochs=1, steps=2)
    reporter.start_epoch()
    reporter.step(0, 3.0, n_items=1)
    reporter.step(0, 1.0, n_items=3)
    assert reporter.end_epoch(0) == pytest.approx(1.5)
