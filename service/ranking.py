"""Exact ranking on top of the Hamming index: radius, k, metadata filter and widening.

Order is (distance, id) everywhere, with the user's string id, never the index's numeric one:
whenever k would cut a distance shell, the whole shell is fetched first, so ties are broken the
same way whatever the insertion order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.index import SearchResult
from service.schemas import Hit
from service.store import CodeIndex


@dataclass(frozen=True)
class Ranked:
    hits: list[Hit]
    probes: int
    widened: bool  # the search went past max_distance to find k hits
    searched_distance: int  # every item up to this distance was considered
    matched: int  # hits before cutting to k (or to ``limit`` for a radius-only search)


def _order(hit: tuple[int, str, int]) -> tuple[int, str]:
    return hit[0], hit[1]


def _unpack(result: SearchResult) -> tuple[np.ndarray, np.ndarray, int]:
    hits = result[0]  # CSR over queries; we send one
    ids = np.asarray(hits.ids, dtype=np.int64)
    return ids, np.asarray(hits.distances, dtype=np.int64), int(result.stats.probes)


def rank(
    index: CodeIndex,
    code: np.ndarray,
    max_distance: int | None,
    k: int | None,
    keep: Callable[[int], bool] | None,
    id_of: Callable[[int], str | None],
    meta: Mapping[int, dict[str, Any]],
    limit: int | None = None,
) -> Ranked:
    """Items within ``max_distance`` (inclusive), at most ``k`` of them; when the ball holds
    fewer than ``k`` that pass the filter, widen exactly, in distance order, until it has ``k``
    or the collection is exhausted. With only ``k``: the ``k`` nearest. A radius-only search
    returns at most ``limit`` hits (``matched`` still counts them all)."""
    probes = 0
    matched = 0

    def collect(ids: np.ndarray, dists: np.ndarray) -> list[tuple[int, str, int]]:
        nonlocal matched
        matched = len(ids)
        if k is None and limit is not None and keep is None and len(ids) > limit:
            # only the shells that can reach the first ``limit`` need ids and sorting
            cut = int(np.partition(dists, limit - 1)[limit - 1])
            inside = dists <= cut
            ids, dists = ids[inside], dists[inside]
        out = []
        for num, dist in zip(ids.tolist(), dists.tolist(), strict=True):
            item_id = id_of(num)  # None: deleted since the index answered
            if item_id is not None and (keep is None or keep(num)):
                out.append((dist, item_id, num))
        out.sort(key=_order)
        if keep is not None:
            matched = len(out)
        return out

    def done(found: list[tuple[int, str, int]], widened: bool, searched: int) -> Ranked:
        # metadata only for what is returned
        n = k if k is not None else limit
        hits = [
            Hit.model_construct(id=item_id, distance=d, metadata=meta.get(num, {}))
            for d, item_id, num in found[:n]
        ]
        return Ranked(hits, probes, widened, searched, max(matched, len(found)))

    total = len(index)
    if max_distance is not None:
        ids, dists, p = _unpack(index.search_radius(code, max_distance))
        probes += p
        hits = collect(ids, dists)
        if k is None or len(hits) >= k or len(ids) >= total:
            return done(hits, False, max_distance)
    assert k is not None
    want = k
    while True:
        total = len(index)  # again each pass: a deletion meanwhile would leave it out of reach
        asked = min(want + 1, max(total, 1))
        ids, dists, p = _unpack(index.search_knn(code, asked))
        probes += p
        if len(ids) == 0:
            return done([], False, max_distance or 0)
        last = int(dists[-1])
        # fewer rows than asked: the index holds no more, whatever ``total`` said
        exhausted = len(ids) < asked or len(ids) >= total
        if exhausted:
            searched = last
        elif len(ids) > want and dists[want - 1] < last:
            # the extra neighbour proves every shell below ``last`` is complete
            ids, dists, searched = ids[dists < last], dists[dists < last], last - 1
        else:  # k cuts the shell at ``last``: fetch all of it
            ids, dists, p = _unpack(index.search_radius(code, last))
            probes += p
            searched = last
            exhausted = len(ids) >= total
        hits = collect(ids, dists)
        if len(hits) >= k or exhausted:
            widened = max_distance is not None and searched > max_distance
            return done(hits, widened, max(searched, max_distance or 0))
        want *= 4
