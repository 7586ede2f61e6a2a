"""The one rule for where models run, shared by the ``bitseek`` commands and the service."""

from __future__ import annotations

import torch


def resolve_device(requested: str) -> str:
    """auto -> cuda when available, else cpu; cuda or cuda:N that is not there is a ValueError
    that says so."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {requested!r} was asked for but CUDA is not available here; use cpu"
            )
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {requested!r} was asked for but only {torch.cuda.device_count()} GPU(s)"
                " exist"
            )
    return requested
