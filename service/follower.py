"""Following the other servers that share a data directory.

Each server process (a ``uvicorn --workers`` worker, or a ``bitseek serve`` beside another) keeps
its own models, indexes and item tables, all derived from the shared store. A daemon thread calls
``Registry.sync`` every ``interval_s``: one cheap query when no other process committed, else it
applies their writes, deletions, new and deleted collections and activated model versions. So a
write acknowledged by one server is searchable on every server within about one interval plus
the time to apply it, and at once on any server asked with ``min_seq``.
"""

from __future__ import annotations

import logging
import threading

from service.registry import Registry

log = logging.getLogger(__name__)


class Follower:
    def __init__(self, registry: Registry, interval_s: float) -> None:
        self.registry = registry
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="follower")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.registry.sync()
            except Exception:  # a failed round is retried at the next tick
                log.exception("following the shared store failed")
