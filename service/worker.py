"""The retraining worker: runs in its own (spawned) process, never in the request path.

It reads a consistent snapshot of the collection's items from SQLite (read-only, WAL lets the
server keep writing), trains a model, saves it as the new version directory, encodes the snapshot
and hands the codes back, reporting progress over a queue. The server applies the result; a worker
that fails, is cancelled or dies changes nothing that is serving.
"""

from __future__ import annotations

import logging
import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.backend import Backend
from service.modalities import Modality
from service.model_runner import infer
from service.store import SnapshotReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSpec:
    """Everything a worker process needs (pickled into it): what to read, train and write."""

    job_id: str
    collection: str
    modality: Modality
    settings: dict[str, Any]
    snapshot: SnapshotReader
    model_dir: Path
    job_dir: Path
    backend: Backend
    torch_threads: int


def run_job(job: JobSpec, queue: Any) -> None:
    """Process entry point; every outcome is one message on ``queue``."""
    parent = os.getppid()
    try:
        os.nice(5)  # training yields the CPU to the server answering searches
    except OSError:
        pass
    try:
        import torch

        if job.torch_threads:
            torch.set_num_threads(job.torch_threads)
        _run(job, queue, parent)
    except BaseException as exc:  # report everything: the server decides what it means
        queue.put({"type": "error", "message": f"{type(exc).__name__}: {exc}"})
        log.error("job %s failed:\n%s", job.job_id, traceback.format_exc())
        raise SystemExit(1) from None


def _run(job: JobSpec, queue: Any, parent: int) -> None:
    rows = job.snapshot.read()
    if not rows:
        raise ValueError(f"collection {job.collection!r} has no items to train on")
    nums = np.asarray([r.num for r in rows], dtype=np.int64)
    ids = [r.id for r in rows]
    snapshot_seq = max(r.seq for r in rows)
    items = job.modality.batch([job.modality.from_bytes(r.payload) for r in rows])
    queue.put({"type": "progress", "stage": "loaded", "items": len(ids)})

    def progress(info: dict[str, Any]) -> None:
        if os.getppid() != parent:  # the server is gone: nobody will apply this
            os._exit(1)
        queue.put({"type": "progress", **{k: _plain(v) for k, v in info.items()}})

    model = job.backend.train(job.modality.name, items, ids, job.settings, progress)
    job.model_dir.parent.mkdir(parents=True, exist_ok=True)
    model.save(job.model_dir)
    queue.put({"type": "progress", "stage": "encoding", "items": len(ids)})
    codes = []
    for start in range(0, len(ids), 2048):
        chunk = items[start : start + 2048]
        codes.append(np.asarray(infer(model.encode, chunk), dtype=np.uint8))
    job.job_dir.mkdir(parents=True, exist_ok=True)
    np.save(job.job_dir / "nums.npy", nums)
    np.save(job.job_dir / "codes.npy", np.concatenate(codes))
    metrics = {k: _plain(v) for k, v in dict(model.metrics).items()}
    queue.put({"type": "done", "seq": snapshot_seq, "metrics": metrics})


def _plain(value: Any) -> Any:
    """JSON-friendly copy of numpy scalars/arrays inside progress and metrics."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
