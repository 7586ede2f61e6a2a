"""Micro-batcher: concurrent requests share model calls; results and errors stay per request."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from service.model_runner import MicroBatcher


def test_concurrent_requests_are_batched_and_split_back() -> None:
    calls: list[int] = []
    sizes: list[int] = []

    def encode(items: Any) -> np.ndarray:
        calls.append(len(items))
        return np.asarray([[len(t)] for t in items])

    async def main() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(pool, max_size=16, max_wait_s=0.01, on_batch=sizes.append)
            texts = [["x" * i] for i in range(1, 41)]
            out = await asyncio.gather(*(batcher.submit("k", encode, t) for t in texts))
            await batcher.close()
            return out

    out = asyncio.run(main())
    assert [int(o[0][0]) for o in out] == list(range(1, 41))
    assert sum(calls) == 40 and len(calls) < 40  # fewer model calls than requests
    assert max(calls) <= 16 and sizes == calls


def test_a_bad_request_fails_alone() -> None:
    def encode(items: Any) -> np.ndarray:
        if "bad" in items:
            raise ValueError("bad item")
        return np.zeros((len(items), 1))

    async def main() -> list[Any]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(pool, max_size=64, max_wait_s=0.01)
            jobs = [batcher.submit("k", encode, [t]) for t in ["a", "bad", "c"]]
            out = await asyncio.gather(*jobs, return_exceptions=True)
            await batcher.close()
            return out

    out = asyncio.run(main())
    assert isinstance(out[1], ValueError)
    assert out[0].shape == (1, 1) and out[2].shape == (1, 1)


def test_different_keys_never_share_a_call() -> None:
    seen: list[set[str]] = []

    def make(tag: str) -> Any:
        def fn(items: Any) -> np.ndarray:
            seen.append({tag})
            return np.zeros((len(items), 1))

        return fn

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(pool, max_size=64, max_wait_s=0.01)
            await asyncio.gather(
                *(batcher.submit(tag, make(tag), ["x"]) for tag in ["a", "b", "a", "b"])
            )
            await batcher.close()

    asyncio.run(main())
    assert len(seen) == 2
