"""One collection in memory: its items (ids and metadata), their filter index, and the serving
(model, index) pair.

Writers serialise on ``write_lock`` (held across the SQLite commit and the in-memory update),
model activations on ``activation_lock`` (held across a whole activation, which takes
``write_lock`` for its last step; never the other way round); searches take no lock (the index
publishes immutable snapshots to its readers, the item table and bitmaps are read whole). A new
model version arrives as a new ``Serving`` object swapped in with one assignment, so a search
that already holds the old one finishes on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
from pyroaring import BitMap

from service.backend import Model
from service.code_column import ColumnedIndex
from service.filter_index import FilterIndex, matches
from service.item_table import ItemTable, meta_bytes, parse_metadata
from service.modalities import Modality
from service.ranking import IndexProbe, Keep, Neighbours, Ranked, rank

# Scanning a filter's items costs one code each; probing the index needs about
# k * indexed / members candidates until k of them pass, each this many times dearer
# (measured: benchmarks/serving_memory.py). Scan when that is cheaper.
PROBE_COST = 30


@dataclass
class Serving:
    version: int
    model: Model
    index: ColumnedIndex  # mutated only under CollectionState.write_lock


@dataclass
class CollectionState:
    name: str
    modality: Modality
    created_at: float
    serving: Serving | None = None
    applied_seq: int = 0  # every write up to this sequence number is in memory (``sync``)
    items: ItemTable = field(default_factory=ItemTable)
    filters: FilterIndex = field(default_factory=FilterIndex)
    write_lock: threading.RLock = field(default_factory=threading.RLock)
    activation_lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def spec(self) -> dict[str, Any]:
        return self.modality.spec

    @property
    def size(self) -> int:
        return self.items.count

    def forget(self, nums: Sequence[int]) -> None:
        self._unfilter(nums)
        self.items.drop(nums)

    def remember(self, rows: Sequence[tuple[int, str, dict[str, Any]]]) -> None:
        """Insert or overwrite (number, id, metadata) rows."""
        self.remember_json([(num, i, meta_bytes(m)) for num, i, m in rows])

    def remember_json(self, rows: Sequence[tuple[int, str, bytes]]) -> None:
        """``remember`` with each metadata as its compact JSON (``store.metadata_json``), as a
        write holds it already."""
        nums = [num for num, _, _ in rows]
        self._unfilter(nums)  # an overwrite: its old values leave the bitmaps
        metas = [m for _, _, m in rows]
        self.items.put(nums, [i for _, i, _ in rows], metas)
        for meta, group in _grouped(nums, metas).items():
            self.filters.add(group, parse_metadata(meta))

    def reload(self, rows: Iterable[tuple[int, str, str]]) -> None:
        """Replace every item with ``rows``: (number, id, metadata JSON as stored)."""
        items, filters = ItemTable(), FilterIndex(self.filters.config)
        rows = iter(rows)
        while chunk := list(islice(rows, 10_000)):
            nums = [num for num, _, _ in chunk]
            metas = [m.encode() for _, _, m in chunk]
            items.put(nums, [i for _, i, _ in chunk], metas)
            for meta, group in _grouped(nums, metas).items():
                filters.add(group, parse_metadata(meta))
        items.trim()
        self.items, self.filters = items, filters  # searches meanwhile read the old ones

    def _unfilter(self, nums: Sequence[int]) -> None:
        wanted = np.asarray(nums, np.int64)
        ptrs, records = self.items.locate(wanted)
        held: dict[bytes, list[int]] = {}
        stored = np.flatnonzero(ptrs >= 0)  # new items (a bulk import's all) hold nothing yet
        for num, ptr in zip(wanted[stored].tolist(), ptrs[stored].tolist(), strict=True):
            held.setdefault(records.metadata_json(ptr), []).append(num)
        for meta, group in held.items():
            self.filters.remove(group, parse_metadata(meta))

    def search(
        self,
        serving: Serving,
        code: np.ndarray,
        max_distance: int | None,
        k: int | None,
        where: dict[str, Any] | None,
        limit: int | None = None,
    ) -> Ranked:
        """Hits sorted by (distance, id); see ``ranking.rank``. A filter's indexed conditions
        select its items from the bitmaps: few of them are ranked by scanning their codes, many
        by probing the index and keeping the members."""
        index = serving.index
        if not where:
            return rank(IndexProbe(index, code), self.items, max_distance, k, None, limit)
        chosen = self.filters.select(where)
        keep = self._keep(chosen.rest)
        members = chosen.members
        neighbours: Neighbours = IndexProbe(index, code)
        if members is not None:
            wanted = k or limit or 1
            if len(members) ** 2 <= PROBE_COST * wanted * len(index):
                neighbours = index.scan(members, code)
            else:
                keep = _both(_member_of(members), keep)
        return rank(neighbours, self.items, max_distance, k, keep, limit)

    def _keep(self, rest: list[tuple[str, Any]]) -> Keep | None:
        """Conditions the bitmaps cannot answer, tested on each candidate's stored metadata."""
        if not rest:
            return None

        def keep(nums: np.ndarray) -> np.ndarray:
            ptrs, records = self.items.locate(nums)
            out = np.zeros(len(nums), bool)
            for i, ptr in enumerate(ptrs.tolist()):
                if ptr >= 0:
                    meta = records.metadata(ptr)
                    out[i] = all(matches(meta, key, val) for key, val in rest)
            return out

        return keep


def _member_of(members: BitMap) -> Keep:
    def keep(nums: np.ndarray) -> np.ndarray:
        return np.fromiter((n in members for n in nums.tolist()), bool, len(nums))

    return keep


def _both(a: Keep, b: Keep | None) -> Keep:
    return a if b is None else lambda nums: a(nums) & b(nums)


def _grouped(nums: Iterable[int], metas: Iterable[bytes]) -> dict[bytes, list[int]]:
    """Numbers by their metadata JSON."""
    out: dict[bytes, list[int]] = {}
    for num, meta in zip(nums, metas, strict=True):
        out.setdefault(meta, []).append(num)
    return out
