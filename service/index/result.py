"""What a search returns: per-query hits in CSR form plus the batch's statistics."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


class Hits(NamedTuple):
    """One query's answer, sorted by (distance, id)."""

    ids: np.ndarray  # int64 (h,)
    distances: np.ndarray  # int32 (h,)


@dataclass(frozen=True)
class SearchStats:
    """How a batch was answered.

    strategy : "bitflip" (one table keyed by the whole code), "multi-index" (``tables``
        substring tables, each probed within its entry of ``table_radii``) or "scan" (popcount
        over every item). For k-NN, ``table_radii`` is the schedule of the largest ball tried
        and ``scanned_queries`` counts the queries that fell back to a scan.
    probes : hash-table lookups; candidates : items whose full distance was computed.
    """

    strategy: str
    tables: int
    table_radii: tuple[int, ...]
    queries: int
    probes: int
    candidates: int
    scanned_queries: int = 0


@dataclass(frozen=True)
class SearchResult:
    """Hits for a batch of queries: query ``i`` owns ``ids[lims[i]:lims[i + 1]]``.

    lims : int64 (n_queries + 1,); ids : int64 (total,); distances : int32 (total,).
    ``result[i]`` gives ``Hits(ids, distances)`` for query ``i``; iterating yields every query's.
    """

    lims: np.ndarray
    ids: np.ndarray
    distances: np.ndarray
    stats: SearchStats

    def __len__(self) -> int:
        return int(self.lims.shape[0]) - 1

    def __getitem__(self, i: int) -> Hits:
        if not -len(self) <= i < len(self):
            raise IndexError(f"query {i} out of range for {len(self)} queries")
        i %= len(self)
        a, b = int(self.lims[i]), int(self.lims[i + 1])
        return Hits(self.ids[a:b], self.distances[a:b])

    def __iter__(self) -> Iterator[Hits]:
        return (self[i] for i in range(len(self)))
