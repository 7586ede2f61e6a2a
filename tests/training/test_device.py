"""The one device rule, for the commands and the service."""

from __future__ import annotations

import pytest
import torch

from training.device import resolve_device


def test_auto_and_cpu() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("requested", ["cuda", "cuda:0", "cuda:7"])
def test_missing_cuda_is_a_value_error_naming_it(requested: str) -> None:
    if torch.cuda.is_available() and requested != "cuda:7":
        assert resolve_device(requested) == requested
        return
    with pytest.raises(ValueError, match=f"device '{requested}'"):
        resolve_device(requested)


def test_a_second_stage_runs_beside_only_on_spare_cpu_cores(monkeypatch) -> None:
    from training import device

    monkeypatch.setattr(device.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    monkeypatch.setattr(device.torch, "get_num_threads", lambda: 1)
    assert device.cores_for_a_second_stage("cpu", processes=1)
    assert not device.cores_for_a_second_stage("cpu", processes=2)  # the ranks hold the cores
    assert not device.cores_for_a_second_stage("cuda", processes=1)
    monkeypatch.setattr(device.torch, "get_num_threads", lambda: 2)
    assert not device.cores_for_a_second_stage("cpu", processes=1)  # torch's threads hold them
