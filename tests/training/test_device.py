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
