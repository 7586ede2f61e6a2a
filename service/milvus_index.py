"""``MilvusIndex``: the ``CodeIndex`` of one serving model version, on a Milvus collection.

Each index is its own Milvus collection of ``(num INT64, code BINARY_VECTOR)`` searched with
``BIN_FLAT`` / ``HAMMING`` (exact: a scan). The answers are exact and sorted by (distance, num),
like ``HammingIndex``'s, whatever Milvus' limits:
- a range search keeps ``range_filter <= d < radius``, so the ball of radius r asks for r + 1;
- one search returns at most 16,384 hits, so a ball that fills a page is split by distance
  (halves, down to single shells), and a single shell that still fills a page by windows of
  item numbers, until every page holds fewer than the limit: then it is complete;
- k-NN asks for the k nearest, keeps the shells below the k-th distance (complete, since the
  metric is exact) and fetches the cut shell whole, so ties go to the smaller numbers.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from typing import Any

import numpy as np

from service.index import CodeWidthError, HammingIndexError, SearchResult, SearchStats
from service.milvus_client import MAX_LIMIT, STRONG, int_list

log = logging.getLogger(__name__)

PREFIX = "bitseek_index_"
_NUMS = 1 << 62  # the window of item numbers searched when none was added yet


class MilvusIndex:
    """Packed uint8 codes (n, bits // 8) under int64 item numbers, in a Milvus collection that
    lives as long as this object (dropped by ``close`` or when it is garbage collected)."""

    def __init__(self, client: Any, bits: int, timeout: float = 30.0) -> None:
        from pymilvus import DataType

        if bits % 8 or not 8 <= bits <= 2048:
            raise CodeWidthError(f"bits must be a multiple of 8 in 8..2048, got {bits}")
        self.bits = bits
        self.name = PREFIX + uuid.uuid4().hex
        self._client = client
        self._timeout = timeout
        self._count = 0  # only this object writes its collection, so it can count exactly
        self._lo, self._hi = 0, _NUMS  # bounds of every number ever added
        self._seen = False
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("num", DataType.INT64, is_primary=True)
        schema.add_field("code", DataType.BINARY_VECTOR, dim=bits)
        params = client.prepare_index_params()
        params.add_index("code", index_type="BIN_FLAT", metric_type="HAMMING")
        client.create_collection(
            self.name,
            schema=schema,
            index_params=params,
            consistency_level=STRONG,
            timeout=timeout,
        )
        self._finalizer = weakref.finalize(self, _drop, client, self.name, timeout)

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"MilvusIndex(bits={self.bits}, items={self._count}, collection={self.name})"

    def close(self) -> None:
        self._finalizer()

    # writes --------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, codes: np.ndarray) -> None:
        """Insert items; an id already present gets the new code (last one wins in a batch)."""
        nums = np.asarray(ids)
        packed = self._check(codes, "codes")
        if nums.ndim != 1 or nums.dtype.kind not in "iu":
            raise HammingIndexError(f"ids must be one-dimensional integers, got {nums.dtype}")
        if nums.shape[0] != packed.shape[0]:
            raise HammingIndexError(
                f"ids has {nums.shape[0]} entries but codes has {packed.shape[0]} rows"
            )
        if nums.size == 0:
            return
        last = {int(n): i for i, n in enumerate(nums.tolist())}  # last one wins
        for start in range(0, len(last), 5000):
            chunk = list(last.items())[start : start + 5000]
            present = self._present([n for n, _ in chunk])
            rows = [{"num": n, "code": packed[i].tobytes()} for n, i in chunk]
            self._client.upsert(self.name, rows, timeout=self._timeout)
            self._count += len(chunk) - len(present)
        low, high = min(last), max(last) + 1
        self._lo, self._hi = (
            (low, high) if not self._seen else (min(self._lo, low), max(self._hi, high))
        )
        self._seen = True

    def remove(self, ids: np.ndarray) -> int:
        nums = sorted({int(n) for n in np.asarray(ids).tolist()})
        gone = 0
        for start in range(0, len(nums), 5000):
            present = self._present(nums[start : start + 5000])
            if present:
                self._client.delete(self.name, ids=sorted(present), timeout=self._timeout)
                gone += len(present)
        self._count -= gone
        return gone

    def _present(self, nums: list[int]) -> set[int]:
        rows = self._client.query(
            self.name,
            filter=f"num in {int_list(nums)}",
            output_fields=["num"],
            consistency_level=STRONG,
            timeout=self._timeout,
        )
        return {int(r["num"]) for r in rows}

    # searches ------------------------------------------------------------------------------
    # Answers come sorted by (distance, number) whatever ``ordered`` says: any order will do.
    def search_radius(
        self, codes: np.ndarray, max_distance: int, *, ordered: bool = True
    ) -> SearchResult:
        if isinstance(max_distance, bool) or not isinstance(max_distance, int | np.integer):
            raise HammingIndexError(f"max_distance must be an integer, got {max_distance!r}")
        if max_distance < 0:
            raise HammingIndexError(f"max_distance must be >= 0, got {max_distance}")
        top = min(int(max_distance), self.bits)
        return self._batch(codes, lambda q, calls: self._ball(q, 0, top, calls))

    def search_knn(
        self, codes: np.ndarray, k: int, *, with_ties: bool = False, ordered: bool = True
    ) -> SearchResult:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise HammingIndexError(f"k must be >= 1, got {k!r}")
        return self._batch(codes, lambda q, calls: self._knn(q, int(k), with_ties, calls))

    def _batch(self, codes: np.ndarray, one: Any) -> SearchResult:
        queries = self._check(codes, "codes")
        calls = [0]
        lims, all_ids, all_dists = [0], [], []
        for row in queries:
            ids, dists = one(row.tobytes(), calls) if self._count else ([], [])
            order = np.lexsort((np.asarray(ids, np.int64), np.asarray(dists, np.int64)))
            all_ids.append(np.asarray(ids, np.int64)[order])
            all_dists.append(np.asarray(dists, np.int32)[order])
            lims.append(lims[-1] + len(ids))
        hits = sum(lims[-1:])
        return SearchResult(
            np.asarray(lims, dtype=np.int64),
            np.concatenate(all_ids) if all_ids else np.zeros(0, np.int64),
            np.concatenate(all_dists) if all_dists else np.zeros(0, np.int32),
            SearchStats("milvus", 0, (), len(queries), calls[0], hits),
        )

    def _search(
        self, q: bytes, calls: list[int], low: int, high: int, where: str = ""
    ) -> tuple[list[int], list[int]]:
        """Items at distance low..high (inclusive), at most ``MAX_LIMIT`` of them."""
        calls[0] += 1
        params: dict[str, Any] = {"radius": high + 1}  # Milvus keeps range_filter <= d < radius
        if low > 0:
            params["range_filter"] = low
        found = self._client.search(
            self.name,
            data=[q],
            anns_field="code",
            limit=MAX_LIMIT,
            filter=where,
            search_params={"metric_type": "HAMMING", "params": params},
            output_fields=[],
            consistency_level=STRONG,
            timeout=self._timeout,
        )[0]
        return [int(h["id"]) for h in found], [int(round(h["distance"])) for h in found]

    def _ball(self, q: bytes, low: int, high: int, calls: list[int]) -> tuple[list[int], list[int]]:
        """Every item at distance low..high: one page if it fits, else halves of the range."""
        ids, dists = self._search(q, calls, low, high)
        if len(ids) < MAX_LIMIT:
            return ids, dists
        if low < high:
            mid = (low + high) // 2
            a_ids, a_dists = self._ball(q, low, mid, calls)
            b_ids, b_dists = self._ball(q, mid + 1, high, calls)
            return a_ids + b_ids, a_dists + b_dists
        return self._shell(q, low, self._lo, self._hi, calls)

    def _shell(
        self, q: bytes, d: int, first: int, end: int, calls: list[int]
    ) -> tuple[list[int], list[int]]:
        """Every item at distance exactly ``d`` with a number in [first, end)."""
        ids, dists = self._search(q, calls, d, d, f"num >= {first} and num < {end}")
        if len(ids) < MAX_LIMIT or end - first <= 1:
            return ids, dists
        mid = (first + end) // 2
        a_ids, a_dists = self._shell(q, d, first, mid, calls)
        b_ids, b_dists = self._shell(q, d, mid, end, calls)
        return a_ids + b_ids, a_dists + b_dists

    def _knn(
        self, q: bytes, k: int, with_ties: bool, calls: list[int]
    ) -> tuple[list[int], list[int]]:
        asked = min(k, MAX_LIMIT)
        calls[0] += 1
        found = self._client.search(
            self.name,
            data=[q],
            anns_field="code",
            limit=asked,
            search_params={"metric_type": "HAMMING"},
            output_fields=[],
            consistency_level=STRONG,
            timeout=self._timeout,
        )[0]
        ids = [int(h["id"]) for h in found]
        dists = [int(round(h["distance"])) for h in found]
        if len(ids) < asked:  # the index holds no more
            return ids, dists
        cut = max(dists)
        # shells below the cut are complete (the scan is exact); the cut shell is fetched whole,
        # and the ones after it while fewer than k are known
        keep = [(d, n) for n, d in zip(ids, dists, strict=True) if d < cut]
        shell = cut
        while len(keep) < k and shell <= self.bits:
            s_ids, s_dists = self._ball(q, shell, shell, calls)
            keep += sorted(zip(s_dists, s_ids, strict=True))
            shell += 1
        keep.sort()
        if len(keep) > k:  # every fetched shell is whole: cut inside the k-th's or after it
            cut = keep[k - 1][0]
            keep = [x for x in keep if x[0] <= cut] if with_ties else keep[:k]
        return [n for _, n in keep], [d for d, _ in keep]

    def _check(self, codes: np.ndarray, name: str) -> np.ndarray:
        arr = np.asarray(codes)
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        width = self.bits // 8
        if arr.dtype != np.uint8 or arr.ndim != 2 or arr.shape[1] != width:
            raise CodeWidthError(
                f"{name} must be uint8 (n, {width}) for {self.bits}-bit codes, got"
                f" {arr.dtype} {arr.shape}"
            )
        return np.ascontiguousarray(arr)


def _drop(client: Any, name: str, timeout: float) -> None:
    try:
        client.drop_collection(name, timeout=timeout)
    except Exception:  # the client may be closed already (shutdown); the store sweeps leftovers
        log.debug("could not drop index collection %s", name, exc_info=True)


def drop_leftovers(client: Any, timeout: float) -> int:
    """Drop index collections a stopped process left behind (only where this process is the
    store's one user: Milvus Lite)."""
    names = [n for n in client.list_collections(timeout=timeout) if n.startswith(PREFIX)]
    for name in names:
        client.drop_collection(name, timeout=timeout)
    return len(names)
