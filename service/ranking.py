"""Exact ranking of one query's neighbours: radius, k, metadata filter and widening.

Order is (distance, id) everywhere, with the user's string id, never the index's numeric one:
whenever k would cut a distance shell, the whole shell is fetched first, so ties are broken the
same way whatever the insertion order. Only the shells that reach the first k are read from the
item table, and of the shell k cuts only the ids that win are decoded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from service.index import SearchResult
from service.item_table import ItemTable, Records
from service.schemas import Hit
from service.store import CodeIndex

Found = tuple[np.ndarray, np.ndarray, int]  # (numbers, distances, probes), in any order
Picked = tuple[int, bytearray, int]  # (distance, id bytes, pointer into the item table's arena)
Keep = Callable[[np.ndarray], np.ndarray]  # item numbers -> which pass the filter
_SMALL = 256  # candidates ranked in plain Python below this; numpy cuts larger sets first


class Neighbours(Protocol):
    """One query's neighbours, each answer in any order (``rank`` orders them)."""

    def __len__(self) -> int: ...  # items it answers from

    # the k nearest and every further item at the k-th's distance: complete up to it
    def knn(self, k: int) -> Found: ...
    def ball(self, radius: int) -> Found: ...


@dataclass(slots=True)  # not frozen: built on every search, and frozen init is slower
class IndexProbe:
    """A ``CodeIndex`` asked about one code (1, bits // 8)."""

    index: CodeIndex
    code: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    # Hits are ranked here (ties by the string id), so the index need not sort them.
    def knn(self, k: int) -> Found:
        return _unpack(self.index.search_knn(self.code, k, with_ties=True, ordered=False))

    def ball(self, radius: int) -> Found:
        return _unpack(self.index.search_radius(self.code, radius, ordered=False))


@dataclass(frozen=True)
class Ranked:
    picked: list[Picked]  # the hits, in (distance, id) order
    records: Records  # the arena their pointers are valid in
    probes: int
    widened: bool  # the search went past max_distance to find k hits
    searched_distance: int  # every item up to this distance was considered
    matched: int  # hits before cutting to k (or to ``limit`` for a radius-only search)

    def hits(self) -> list[Hit]:
        return [
            Hit(id=key.decode(), distance=d, metadata=self.records.metadata(p))
            for d, key, p in self.picked
        ]

    def hits_json(self) -> bytes:
        """``hits()`` as the JSON array pydantic writes, straight from the records: ids and
        metadata are stored as JSON-ready UTF-8, so no ``Hit`` is built or serialised."""
        records = self.records
        return b"[" + b",".join(
            b'{"id":%b,"distance":%d,"metadata":%b}'
            % (_json_string(key), d, records.metadata_json(p))
            for d, key, p in self.picked
        ) + b"]"  # fmt: skip


_PLAIN = re.compile(rb"[ !#-\[\]-~]*")  # printable ASCII but the quote and the backslash


def _json_string(key: bytearray) -> bytes:
    """A UTF-8 id as a JSON string, escaped as pydantic escapes it."""
    if _PLAIN.fullmatch(key):
        return b'"' + key + b'"'
    return json.dumps(key.decode(), ensure_ascii=False).encode()


def _unpack(result: SearchResult) -> Found:
    hits = result[0]  # CSR over queries; we send one
    ids = np.asarray(hits.ids, dtype=np.int64)
    return ids, np.asarray(hits.distances, dtype=np.int64), int(result.stats.probes)


def _first(
    n: int | None, dists: np.ndarray, ptrs: np.ndarray, records: Records
) -> tuple[list[Picked], int]:
    """The first ``n`` (all: None) of the live candidates (pointer >= 0) as (distance, id bytes,
    pointer) in (distance, id) order, and how many candidates are live."""
    live = None
    if n is not None and len(ptrs) > _SMALL:  # many: numpy keeps the shells that reach n
        keep = ptrs >= 0
        dists, ptrs = dists[keep], ptrs[keep]
        live = len(ptrs)
        if live > n:
            inside = dists <= np.partition(dists, n - 1)[n - 1]
            dists, ptrs = dists[inside], ptrs[inside]
    pairs = [(d, p) for d, p in zip(dists.tolist(), ptrs.tolist(), strict=True) if p >= 0]
    if n is None or len(pairs) <= n:
        out = [(d, records.key(p), p) for d, p in pairs]
    else:
        cut = sorted(d for d, _ in pairs)[n - 1]
        out = [(d, records.key(p), p) for d, p in pairs if d < cut]
        # of the shell n cuts only the smallest ids are hits: decode no other
        shell = sorted([(records.key(p), p) for d, p in pairs if d == cut])
        out += [(cut, key, p) for key, p in shell[: n - len(out)]]
    out.sort()
    return out, len(pairs) if live is None else live


def rank(
    neighbours: Neighbours,
    items: ItemTable,
    max_distance: int | None,
    k: int | None,
    keep: Keep | None,
    limit: int | None = None,
) -> Ranked:
    """Items within ``max_distance`` (inclusive), at most ``k`` of them; when the ball holds
    fewer than ``k`` that pass the filter, widen exactly, in distance order, until it has ``k``
    or the collection is exhausted. With only ``k``: the ``k`` nearest. A radius-only search
    returns at most ``limit`` hits (``matched`` still counts them all). Items that ``items`` no
    longer holds (deleted since the index answered) are left out."""
    probes = 0
    matched = 0
    records = Records(bytearray())
    n = k if k is not None else limit

    def collect(ids: np.ndarray, dists: np.ndarray) -> list[Picked]:
        nonlocal matched, records
        ptrs, records = items.locate(ids)
        if keep is not None:
            ptrs[~keep(ids)] = -1
        found, matched = _first(n, dists, ptrs, records)
        return found

    def done(found: list[Picked], widened: bool, searched: int) -> Ranked:
        return Ranked(found[:n], records, probes, widened, searched, max(matched, len(found)))

    total = len(neighbours)
    if max_distance is not None:
        ids, dists, p = neighbours.ball(max_distance)
        probes += p
        hits = collect(ids, dists)
        if k is None or len(hits) >= k or len(ids) >= total:
            return done(hits, False, max_distance)
    assert k is not None
    want = k
    while True:
        total = len(neighbours)  # again each pass: a deletion meanwhile would leave it out of reach
        asked = min(want, max(total, 1))
        ids, dists, p = neighbours.knn(asked)
        probes += p
        if len(ids) == 0:
            return done([], False, max_distance or 0)
        searched = int(dists.max())  # with the k-th's whole shell, every item up to it is here
        # fewer rows than asked: the index holds no more, whatever ``total`` said
        exhausted = len(ids) < asked or len(ids) >= total
        hits = collect(ids, dists)
        if len(hits) >= k or exhausted:
            widened = max_distance is not None and searched > max_distance
            return done(hits, widened, max(searched, max_distance or 0))
        want *= 4
