"""Data-parallel training over several processes (torch.distributed, DistributedDataParallel).

One run of `train` per process (rank), all with the same config and seed:
- the global steps (the featuriser and its vocabulary, the k-NN graphs and their spectral codes)
  run once, on rank 0, and reach the other ranks by broadcast (`share`); per-item transforms
  (the featuriser's inputs and targets, the neighbour-mean targets) run on every rank;
- every rank draws the same minibatches from the same seeded generator and steps on its own part
  of each (`shard`); DistributedDataParallel (`wrap`) averages the gradients in backward, so each
  step is the single-process step on the whole minibatch (except that batch statistics, the bit
  balance and decorrelation terms, are taken over each rank's part). The RBM's CD-1 updates are
  not gradients of a loss: its weights and momentum are averaged after each step
  (`average_`), which for momentum SGD is the same as averaging the updates;
- rank 0 writes the model; every rank ends with the same weights.

Started by `bitseek train --nproc N` (`launch` spawns N local processes) or by torchrun, whose
environment (RANK, WORLD_SIZE, MASTER_ADDR, ...) `session` reads. Backend: NCCL when training on
CUDA (one GPU per local rank), gloo on CPUs. In a single process (no torchrun environment, no
--nproc) every function here is a no-op and training is unchanged, bit for bit.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

LOG = logging.getLogger(__name__)
T = TypeVar("T")
RANK_SEED_STRIDE = 104_729  # random streams that must differ between ranks: seed + rank * this


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def rank_seed(seed: int) -> int:
    """A seed for a random stream each rank draws for its own rows (noise, corruption)."""
    return seed + RANK_SEED_STRIDE * rank()


def shard(n: int) -> slice:
    """This rank's part of a minibatch of n rows (every rank takes all of one smaller than the
    world: all ranks then compute the same gradient, and its average is that gradient)."""
    size = world_size()
    return slice(None) if n < size or size == 1 else slice(rank(), None, size)


def device_for(device: str) -> str:
    """The device this rank trains on: with CUDA, the GPU of its local rank."""
    if active() and device.startswith("cuda"):
        local = int(os.environ.get("LOCAL_RANK", rank()))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return device


def wrap(model: nn.Module) -> nn.Module:
    """``model`` in DistributedDataParallel (which copies rank 0's weights to every rank now and
    averages gradients in backward); ``model`` itself in a single process."""
    if not active():
        return model
    param = next(model.parameters())
    ids = [param.device.index] if param.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


@torch.no_grad()
def broadcast_(tensors: Iterable[torch.Tensor]) -> None:
    """Overwrite ``tensors`` with rank 0's, in place."""
    if active():
        for t in tensors:
            dist.broadcast(t, 0)


@torch.no_grad()
def average_(tensors: Iterable[torch.Tensor]) -> None:
    """Replace ``tensors`` by their mean over the ranks, in place."""
    if active():
        for t in tensors:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t.div_(world_size())


def mean(value: float) -> float:
    """The mean of a number over the ranks (an epoch's loss, each rank's over its parts)."""
    if not active():
        return value
    t = torch.tensor([value], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item()) / world_size()


@torch.no_grad()
def check_same_weights(module: nn.Module, what: str) -> None:
    """Raise if the ranks' copies of ``module`` differ (they must be equal after every step)."""
    if not active():
        return
    digest = torch.stack([p.detach().double().sum() for p in module.parameters()]).cpu()
    low, high = digest.clone(), digest.clone()
    if dist.get_backend() == "nccl":
        low, high = low.cuda(), high.cuda()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    if not torch.equal(low, high):
        raise RuntimeError(f"data-parallel ranks hold different {what} weights")


def share(make: Callable[[], T]) -> T:
    """``make()`` run on rank 0 only, its result sent to every rank (pickled): a global step."""
    if not active():
        return make()
    box: list[Any] = [make() if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[no-any-return]


def backend_for(device: str) -> str:
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


@contextmanager
def session(device: str) -> Iterator[None]:
    """Join the process group torchrun or `launch` described in the environment (WORLD_SIZE > 1)
    for the duration; nothing in a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield
        return
    backend = backend_for(device)
    dist.init_process_group(backend)
    LOG.info("rank %d of %d (%s)", dist.get_rank(), dist.get_world_size(), backend)
    try:
        yield
        dist.barrier()  # no rank tears its connections down while a peer still talks on them
    finally:
        dist.destroy_process_group()


def launch(nproc: int, fn: Callable[..., int], *args: Any) -> int:
    """Run ``fn(*args)`` in ``nproc`` local processes that form one process group (as torchrun
    would); returns the first non-zero exit code, else 0."""
    import torch.multiprocessing as mp

    port = _free_port()
    try:
        mp.start_processes(_worker, args=(nproc, port, fn, args), nprocs=nproc, join=True,
                           start_method="spawn")  # fmt: skip
    except mp.ProcessExitedException as e:
        return e.exit_code or 1
    return 0


def _worker(index: int, nproc: int, port: int, fn: Callable[..., int], args: tuple) -> None:
    os.environ.update({"RANK": str(index), "LOCAL_RANK": str(index), "WORLD_SIZE": str(nproc),
                       "LOCAL_WORLD_SIZE": str(nproc), "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)})  # fmt: skip
    code = fn(*args)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    # The rank's work is done and written; skipping the interpreter's teardown skips gloo's and
    # the TCP store's C++ destructors, which now and then abort a finished rank (SIGABRT).
    os._exit(code)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
