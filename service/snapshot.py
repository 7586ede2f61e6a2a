"""Start-up from saved indexes instead of rebuilding them from the stored codes.

Once writes settle (the store's write sequence unchanged for ``settle_s``) each collection's
``HammingIndex`` is saved as ``collections/<c>/index/v<version>-seq<seq>.idx``
(``service.index.persistence``: one file, CRC-checked, written atomically), named by the model
version it serves and the store's sequence when it was saved. The name is part of the same atomic
rename as the contents, so a file can never claim a sequence its contents do not hold.

``Registry`` takes a snapshot at start-up only when it is the active version's and nothing was
written since: the sequence is shared by every collection and never goes back, so any write to
any collection (by any process) leaves every older snapshot stale. A stale, corrupt or missing
snapshot means a rebuild from the stored codes, and the log says which. Another index backend
(``Registry.index_factory``) keeps its own durability: only ``HammingIndex`` is saved here.
"""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from service.index import HammingIndex, HammingIndexError

if TYPE_CHECKING:
    from service.registry import Registry

log = logging.getLogger(__name__)

_NAME = re.compile(r"v(\d+)-seq(\d+)\.idx")


def _saved(directory: Path) -> list[tuple[int, int, Path]]:
    """(version, seq, path) of every snapshot in ``directory``."""
    found = (_NAME.fullmatch(p.name) for p in directory.iterdir()) if directory.is_dir() else ()
    return [(int(m[1]), int(m[2]), directory / m[0]) for m in found if m]


def load(
    directory: Path, name: str, version: int, bits: int, seq: int, items: int
) -> HammingIndex | None:
    """The snapshot of ``version`` if it was saved at ``seq`` and holds ``items`` items; else
    None, having logged why."""
    mine = sorted(s for s in _saved(directory) if s[0] == version)
    if not mine:
        log.info("collection %s: no saved index of v%d; building it", name, version)
        return None
    _, saved_seq, path = mine[-1]
    if saved_seq != seq:
        log.warning(
            "collection %s: saved index is stale (written at seq %d, the store is at %d);"
            " rebuilding it",
            name,
            saved_seq,
            seq,
        )
        return None
    try:
        index = HammingIndex.load(path, bits)
    except (HammingIndexError, OSError, ValueError) as exc:
        log.warning("collection %s: saved index is unreadable (%s); rebuilding it", name, exc)
        return None
    if len(index) != items:
        log.warning(
            "collection %s: saved index holds %d items, the store %d; rebuilding it",
            name,
            len(index),
            items,
        )
        return None
    log.info("collection %s: loaded the index saved at seq %d", name, seq)
    return index


def save_all(registry: Registry) -> int:
    """Save each serving ``HammingIndex`` that has no snapshot at the store's current sequence;
    returns how many were written. Skips everything while this process has not yet applied
    another's writes (its indexes would not hold them)."""
    written = 0
    for state in list(registry.states.values()):
        with state.write_lock:  # no write of this collection is half-applied
            serving = state.serving
            inner = serving.index.inner if serving is not None else None
            deleted = registry.states.get(state.name) is not state
            if serving is None or deleted or not isinstance(inner, HammingIndex):
                continue
            seq = registry.store.max_seq()
            if not registry.caught_up():
                return written
            directory = registry.collection_dir(state.name) / "index"
            old = _saved(directory)
            if (serving.version, seq) in {(v, s) for v, s, _ in old}:
                continue
            inner.save(directory / f"v{serving.version}-seq{seq}.idx")
            written += 1
        for _, _, path in old:  # superseded
            path.unlink(missing_ok=True)
    return written


class Snapshotter:
    """A daemon thread that saves the indexes once the store's sequence has stood still for
    ``settle_s``, and once more at ``stop``."""

    def __init__(self, registry: Registry, settle_s: float) -> None:
        self.registry = registry
        self.settle_s = settle_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="snapshots")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._save()

    def _run(self) -> None:
        last = self.registry.store.max_seq()
        while not self._stop.wait(self.settle_s):
            seq = self.registry.store.max_seq()
            if seq == last:
                self._save()
            last = seq

    def _save(self) -> None:
        try:
            written = save_all(self.registry)
        except Exception:  # a failed save costs the next start a rebuild, nothing more
            log.exception("saving the indexes failed")
            return
        if written:
            log.info("saved %d collection index(es)", written)
