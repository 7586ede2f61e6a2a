"""Everything the app owns between start-up and shutdown, built and torn down by the lifespan."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from service.backend import Backend
from service.config import Settings
from service.follower import Follower
from service.insights import InsightsCache
from service.jobs import JobManager
from service.model_runner import ModelRunner
from service.prometheus import Metrics
from service.registry import IndexFactory, Registry
from service.snapshot import Snapshotter
from service.storage import open_storage
from service.store import ItemStore
from training.device import resolve_device

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    device: str
    store: ItemStore
    registry: Registry
    jobs: JobManager
    models: ModelRunner
    metrics: Metrics
    follower: Follower
    snapshots: Snapshotter | None  # None: indexes are not saved
    insights: InsightsCache = field(default_factory=InsightsCache)  # model pictures, on disk

    @classmethod
    def start(
        cls,
        settings: Settings,
        backend: Backend,
        metrics: Metrics,
        index_factory: IndexFactory | None = None,
    ) -> Runtime:
        device = resolve_device(settings.device)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        storage = open_storage(settings)
        store = storage.store
        failed = store.fail_unfinished_jobs()
        if failed:
            log.warning("%d retraining job(s) were interrupted by the last shutdown", failed)
        models = ModelRunner(
            settings.batch_max_size,
            settings.batch_max_wait_ms / 1000.0,
            on_batch=metrics.batch_size.observe,
        )
        registry = Registry(
            store,
            backend,
            settings.data_dir,
            device,
            settings.input_limits,
            index_factory or storage.index_factory,
            run_model=models.call,
            # only the built-in HammingIndex is saved here; Milvus keeps its own durability
            snapshots=settings.snapshot_settle_s > 0
            and index_factory is None
            and settings.backend == "local",
        )
        registry.load()
        _warm_up(registry.index_factory)
        jobs = JobManager(registry, settings.torch_threads)
        follower = Follower(registry, settings.sync_interval_ms / 1000.0)
        follower.start()
        snapshots = None
        if registry.snapshots:
            snapshots = Snapshotter(registry, settings.snapshot_settle_s)
            snapshots.start()
        log.info(
            "bitseek ready on %s: %d collection(s) in %s",
            device,
            len(registry.states),
            settings.data_dir,
        )
        return cls(settings, device, store, registry, jobs, models, metrics, follower, snapshots)

    def snapshot(self) -> dict[str, Any]:
        states = list(self.registry.states.values())
        return {
            "collections": {
                s.name: (s.size, s.serving.version if s.serving else None) for s in states
            },
            "device": self.device,
            "jobs_running": self.jobs.running(),
        }

    async def close(self) -> None:
        self.follower.stop()
        self.jobs.shutdown()  # before the models: a job applying its result still encodes
        await self.models.close()
        if self.snapshots is not None:  # after the jobs: an applied result is saved too
            self.snapshots.stop()
        self.store.close()


def _warm_up(index_factory: IndexFactory) -> None:
    """Compile the index kernels now (numba caches them on disk) rather than on a request."""
    index = index_factory(32)
    rng = np.random.RandomState(0)
    index.add(np.arange(64, dtype=np.int64), rng.randint(0, 256, (64, 4)).astype(np.uint8))
    query = rng.randint(0, 256, (1, 4)).astype(np.uint8)
    index.search_radius(query, 2)
    index.search_knn(query, 3)
