"""The one rule for where models run, shared by the ``bitseek`` commands and the service."""

from __future__ import annotations

import os

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


def cores_for_a_second_stage(device: str, processes: int) -> bool:
    """Whether a second training stage can run beside the first on cores of its own: on the
    CPU, in a single process, with at least twice torch's intra-op threads available (the
    CLI's one thread on 2 cores: yes; a server retrain using torch's default of every core: no).
    """
    if device != "cpu" or processes > 1:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) >= 2 * torch.get_num_threads()
