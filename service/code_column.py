"""Codes by item number beside any ``CodeIndex``, so a selective filter ranks only its own items.

``ColumnedIndex`` is a ``CodeIndex`` that forwards every call to the index it wraps and keeps a
copy of each item's code in a ``NumArray``, with a bitmap of the numbers the index holds. A
search whose filter leaves few items (``service.collection``) scans those items' codes
(``MemberScan``) instead of probing the index outward until enough neighbours pass the filter:
its cost follows the filter's size, not the collection's. The copy costs bits / 8 bytes an item.
"""

from __future__ import annotations

import numpy as np
from pyroaring import BitMap

from service.index import SearchResult
from service.num_array import NumArray
from service.ranking import Found
from service.store import CodeIndex


class MemberScan:
    """One query against a fixed set of items, answered from their codes (``ranking.Neighbours``):
    sorted by (distance, number) like an index's answers."""

    def __init__(self, nums: np.ndarray, distances: np.ndarray) -> None:
        self._order = distances.astype(np.int64) << 32 | nums  # numbers < 2**32 (bitmaps)
        self._distances = distances

    def __len__(self) -> int:
        return len(self._order)

    def knn(self, k: int) -> Found:
        distances = self._distances
        if k < len(distances):  # the k-th's distance, then its whole shell
            kth = np.partition(distances, k - 1)[k - 1]
            return self.ball(int(kth))
        return self._found(np.sort(self._order))

    def ball(self, radius: int) -> Found:
        return self._found(np.sort(self._order[self._distances <= radius]))

    @staticmethod
    def _found(order: np.ndarray) -> Found:
        return order & 0xFFFFFFFF, order >> 32, 0


class ColumnedIndex:
    """A ``CodeIndex``; writers are serialised by the caller, as for the index it wraps."""

    def __init__(self, inner: CodeIndex, bits: int) -> None:
        self.inner = inner
        self._codes = NumArray(np.uint8, width=bits // 8)
        self._present = BitMap()  # written after the codes: a member's row is always filled

    @classmethod
    def holding(
        cls, inner: CodeIndex, bits: int, ids: np.ndarray, codes: np.ndarray
    ) -> ColumnedIndex:
        """Wrap an index that already holds ``codes`` under ``ids`` (one loaded from disk)."""
        index = cls(inner, bits)
        index._copy(np.asarray(ids, np.int64), codes)
        return index

    def __len__(self) -> int:
        return len(self.inner)

    def add(self, ids: np.ndarray, codes: np.ndarray) -> None:
        ids = np.asarray(ids, np.int64)
        self.inner.add(ids, codes)
        self._copy(ids, codes)

    def _copy(self, ids: np.ndarray, codes: np.ndarray) -> None:
        first, arr = self._codes.ensure(ids)
        arr[ids - first] = codes
        self._present.update(ids)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.asarray(ids, np.int64)
        removed = self.inner.remove(ids)
        self._present.difference_update(BitMap(ids))
        return removed

    def search_radius(
        self, codes: np.ndarray, max_distance: int, *, ordered: bool = True
    ) -> SearchResult:
        return self.inner.search_radius(codes, max_distance, ordered=ordered)

    def search_knn(
        self, codes: np.ndarray, k: int, *, with_ties: bool = False, ordered: bool = True
    ) -> SearchResult:
        return self.inner.search_knn(codes, k, with_ties=with_ties, ordered=ordered)

    def scan(self, members: BitMap, code: np.ndarray) -> MemberScan:
        """``members`` that the index holds, with their distances to ``code`` (1, bits // 8)."""
        nums = np.frombuffer((members & self._present).to_array(), np.uint32).astype(np.int64)
        arr, rows, inside = self._codes.slots(nums)
        return MemberScan(nums[inside], hamming(arr[rows], code.reshape(-1)))


def hamming(codes: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Distances from packed uint8 codes (n, w) to one packed code (w,)."""
    return np.bitwise_count(codes ^ code).sum(axis=1, dtype=np.int32)
