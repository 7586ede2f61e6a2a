"""Where the server's model calls run: one thread, and micro-batches for concurrent queries.

Every model call of the serving process (encoding items as they are written, queries, denoising,
re-encoding a collection for a new version) goes through one ``ModelRunner``: one thread, since
torch parallelises inside a call and two callers would only contend.

Micro-batching: requests queue up while the model is busy with the previous batch, so under load
batches grow by themselves; an idle request waits at most ``max_wait_s`` for company. Batches
are bounded by ``max_size`` items and grouped by (model, operation), so a model swap mid-stream
is harmless.
If a batched call fails (one bad item), each request is retried alone so it gets its own error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)


def infer(fn: Callable[[Any], Any], items: Any) -> Any:
    """Run one model call without autograd bookkeeping (thread-local, so entered per call)."""
    with torch.inference_mode():
        return fn(items)


@dataclass
class _Pending:
    key: Any
    fn: Callable[[Any], Any]
    items: Any  # list[str] or ndarray with a leading batch axis
    n: int
    future: asyncio.Future[Any]


def _concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], list):
        return [x for part in parts for x in part]
    return np.concatenate(parts, axis=0)


class MicroBatcher:
    def __init__(
        self,
        executor: Executor,
        max_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.executor = executor
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Pending] | None = None
        self._task: asyncio.Task[None] | None = None

    async def submit(self, key: Any, fn: Callable[[Any], Any], items: Any) -> Any:
        """``fn(items)`` evaluated inside a batch shared with the other requests of ``key``
        (e.g. (model, operation)); returns this request's rows."""
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._loop(self._queue))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(key, fn, items, len(items), future))
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _loop(self, queue: asyncio.Queue[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            size = batch[0].n
            deadline = loop.time() + self.max_wait_s
            while size < self.max_size:
                if queue.empty():
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        batch.append(await asyncio.wait_for(queue.get(), remaining))
                    except TimeoutError:
                        break
                else:
                    batch.append(queue.get_nowait())
                size += batch[-1].n
            groups: dict[Any, list[_Pending]] = {}
            for pending in batch:
                groups.setdefault(pending.key, []).append(pending)
            for group in groups.values():
                await self._run(group)

    async def _run(self, group: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        fn = group[0].fn
        if self.on_batch is not None:
            self.on_batch(sum(p.n for p in group))
        try:
            out = await loop.run_in_executor(
                self.executor, infer, fn, _concat([p.items for p in group])
            )
        except Exception as exc:
            if len(group) == 1:
                _settle(group[0], None, exc)
                return
            for pending in group:  # isolate the failing request
                await self._run([pending])
            return
        start = 0
        for pending in group:
            _settle(pending, _rows(out, start, start + pending.n), None)
            start += pending.n


def _rows(out: Any, start: int, stop: int) -> Any:
    """A request's rows of a batch's output (an array, a list, or a tuple of either)."""
    if isinstance(out, tuple):
        return tuple(part[start:stop] for part in out)
    return out[start:stop]


def _settle(pending: _Pending, value: Any, error: BaseException | None) -> None:
    if pending.future.done():  # the client went away
        return
    if error is not None:
        pending.future.set_exception(error)
    else:
        pending.future.set_result(value)


class ModelRunner:
    """The one executor of model calls: ``call`` from worker threads, ``run`` and ``batched``
    from the event loop."""

    def __init__(
        self, max_batch: int, max_wait_s: float, on_batch: Callable[[int], None] | None = None
    ) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._batcher = MicroBatcher(self._executor, max_batch, max_wait_s, on_batch)

    def call(self, fn: Callable[[Any], Any], items: Any) -> Any:
        """``fn(items)`` on the model thread, waited for; never from the model thread itself."""
        return self._executor.submit(infer, fn, items).result()

    async def run(self, fn: Callable[[Any], Any], items: Any) -> Any:
        """``fn(items)`` on the model thread, alone."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, infer, fn, items)

    async def batched(self, key: Any, fn: Callable[[Any], Any], items: Any) -> Any:
        """``fn(items)`` in a batch shared with concurrent requests of the same ``key``."""
        return await self._batcher.submit(key, fn, items)

    async def close(self) -> None:
        await self._batcher.close()
        self._executor.shutdown(wait=True)
