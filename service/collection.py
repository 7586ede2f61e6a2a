"""One collection in memory: its id maps and metadata, and the serving (model, index) pair.

Writers serialise on ``write_lock`` (held across the SQLite commit and the index update), model
activations on ``activation_lock`` (held across a whole activation, which takes ``write_lock``
for its last step; never the other way round); searches take no lock (the index publishes
immutable snapshots to its readers). A new model version arrives as a new ``Serving`` object
swapped in with one assignment, so a search that already holds the old one finishes on it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.backend import Model
from service.modalities import Modality
from service.ranking import Ranked, rank
from service.store import CodeIndex


@dataclass
class Serving:
    version: int
    model: Model
    index: CodeIndex  # mutated only under CollectionState.write_lock


@dataclass
class CollectionState:
    name: str
    modality: Modality
    created_at: float
    serving: Serving | None = None
    applied_seq: int = 0  # every write up to this sequence number is in memory (``sync``)
    ids: dict[int, str] = field(default_factory=dict)  # num -> user id
    nums: dict[str, int] = field(default_factory=dict)  # user id -> num
    meta: dict[int, dict[str, Any]] = field(default_factory=dict)
    write_lock: threading.RLock = field(default_factory=threading.RLock)
    activation_lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def spec(self) -> dict[str, Any]:
        return self.modality.spec

    @property
    def size(self) -> int:
        return len(self.nums)

    def forget(self, num: int) -> None:
        item_id = self.ids.pop(num, None)
        if item_id is not None and self.nums.get(item_id) == num:  # not a re-created id's
            del self.nums[item_id]
        self.meta.pop(num, None)

    def remember(self, num: int, item_id: str, metadata: dict[str, Any]) -> None:
        self.ids[num] = item_id
        self.nums[item_id] = num
        self.meta[num] = metadata

    def search(
        self,
        serving: Serving,
        code: np.ndarray,
        max_distance: int | None,
        k: int | None,
        where: dict[str, Any] | None,
        limit: int | None = None,
    ) -> Ranked:
        """Hits sorted by (distance, id); see ``ranking.rank``."""

        wanted = list((where or {}).items())

        def keep(num: int) -> bool:
            meta = self.meta.get(num)
            if meta is None:  # deleted between the index probe and now
                return False
            return all(_matches(meta, key, val) for key, val in wanted)

        chosen = keep if wanted else None
        return rank(serving.index, code, max_distance, k, chosen, self.ids.get, self.meta, limit)


def _matches(meta: dict[str, Any], key: str, wanted: Any) -> bool:
    """JSON equality: the key must be there (null is a value, not absence), and true is not 1
    (Python's bool is an int, so == alone would say it is)."""
    if key not in meta:
        return False
    have = meta[key]
    return isinstance(have, bool) == isinstance(wanted, bool) and have == wanted
