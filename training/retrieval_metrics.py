"""Retrieval metrics for binary codes under the standard semantic-hashing protocol.

Queries (test items) are ranked against a database (training items) by Hamming distance; a
database item is relevant to a query when the two share at least one label.

Hamming distance takes only `bits + 1` values, so every metric here is a function of two per-query
histograms: how many database items lie at each distance (`counts`) and how many of those are
relevant (`relevant`). `distance_histograms` builds them in chunks (never an (nq, nd) float matrix);
the metric functions then work on (nq, bits + 1) arrays only.

Ties. Items at the same distance have no order, so every metric that cuts the ranking (precision@k,
mAP@depth) is the *expected* value over uniformly random orderings of tied items; no tie-breaking
rule can raise or lower a score:
- precision@k: the items tied at the k-th distance contribute (places left) x (share relevant).
- mAP@depth: AP@depth = (1 / number of relevant items in the top `depth`) x sum over relevant
  positions i <= depth of precision@i (0 when no relevant item is retrieved), averaged over all
  queries. We return E[AP] over random tie orders, computed exactly: the tie group that straddles
  the cut-off decides the denominator, so we sum over its hypergeometric number of relevant items
  drawn; within-group positional sums have closed forms (digamma differences, McSherry & Najork,
  ECIR 2008).
Radius metrics need no tie handling: everything within the radius is returned.
- precision / recall within radius r: per query, relevant returned / returned (0 when nothing is
  returned) and relevant returned / relevant in the database (0 when none), averaged over queries.
- precision-recall curve over radii 0..bits: pooled over all queries (sum of relevant returned /
  sum returned; sum of relevant returned / sum relevant), so small radii with many empty queries
  stay well defined.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.special import digamma, gammaln

LOG = logging.getLogger(__name__)

# Pairs processed per chunk: bounds the uint64 XOR intermediate to about 32 MB per code word.
_PAIRS_PER_CHUNK = 1 << 22


@dataclass(frozen=True)
class PRCurve:
    """Precision and recall of Hamming-ball lookups at radius 0..bits, pooled over queries."""

    radius: list[int]
    precision: list[float]
    recall: list[float]


@dataclass(frozen=True)
class RetrievalMetrics:
    bits: int
    n_queries: int
    n_database: int
    k: int
    precision_at_k: float
    map_depth: int
    mean_average_precision: float
    radius: int
    precision_within_radius: float
    recall_within_radius: float
    empty_within_radius: float  # share of queries with nothing within the radius
    pr_curve: PRCurve

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_words(packed: np.ndarray, name: str) -> np.ndarray:
    """View a (n, n_bytes) uint8 array as (n, ceil(n_bytes / 8)) uint64, zero-padded."""
    if packed.ndim != 2 or packed.dtype != np.uint8:
        raise ValueError(
            f"{name} must be a uint8 array of shape (n, n_bytes), got {packed.dtype} {packed.shape}"
        )
    n, n_bytes = packed.shape
    width = -(-n_bytes // 8) * 8
    padded = np.zeros((n, width), dtype=np.uint8)
    padded[:, :n_bytes] = packed
    return padded.view(np.uint64)


def _check_inputs(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
) -> None:
    for name, arr in (("query_codes", query_codes), ("db_codes", db_codes)):
        if arr.ndim != 2 or arr.dtype != np.uint8:
            raise ValueError(
                f"{name} must be packed uint8 (n, bits // 8), got {arr.dtype} {arr.shape}"
            )
    if query_codes.shape[1] != db_codes.shape[1]:
        raise ValueError(
            f"query_codes have {query_codes.shape[1] * 8} bits but db_codes have "
            f"{db_codes.shape[1] * 8}; encode both with the same model"
        )
    for name, labels, codes in (
        ("query_labels", query_labels, query_codes),
        ("db_labels", db_labels, db_codes),
    ):
        if labels.ndim != 2 or labels.shape[0] != codes.shape[0]:
            raise ValueError(
                f"{name} must be multi-hot of shape ({codes.shape[0]}, n_labels), "
                f"got {labels.shape}"
            )
    if query_labels.shape[1] != db_labels.shape[1]:
        raise ValueError(
            f"query_labels have {query_labels.shape[1]} label columns, db_labels "
            f"{db_labels.shape[1]}; both must use the same label names"
        )
    if len(db_codes) == 0 or len(query_codes) == 0:
        raise ValueError(
            f"need at least one query and one database item, got {len(query_codes)} queries and "
            f"{len(db_codes)} database items"
        )


def distance_histograms(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-query histograms of Hamming distance to the database.

    query_codes : uint8 (nq, n_bytes), db_codes : uint8 (nd, n_bytes), packed bits
    query_labels : (nq, n_labels), db_labels : (nd, n_labels), multi-hot (nonzero = has label)
    returns : (counts, relevant), int64 arrays of shape (nq, bits + 1): how many database items
        are at each distance, and how many of those share a label with the query.
    """
    _check_inputs(query_codes, db_codes, query_labels, db_labels)
    bits = query_codes.shape[1] * 8
    n_bins = bits + 1
    q_words = _as_words(query_codes, "query_codes")
    d_words = _as_words(db_codes, "db_codes")
    # Labels as bitmasks: "shares a label" becomes a word-wise AND, no (nq, nd, n_labels) tensor.
    q_mask = _as_words(np.packbits(query_labels != 0, axis=1), "query_labels")
    d_mask = _as_words(np.packbits(db_labels != 0, axis=1), "db_labels")
    nq, nd = len(q_words), len(d_words)
    counts = np.zeros((nq, n_bins), dtype=np.int64)
    relevant = np.zeros((nq, n_bins), dtype=np.int64)
    dist_dtype = np.uint8 if bits < 256 else np.uint16
    step = max(1, _PAIRS_PER_CHUNK // nd)
    for start in range(0, nq, step):
        stop = min(start + step, nq)
        rows = stop - start
        dist = np.zeros((rows, nd), dtype=dist_dtype)
        for w in range(q_words.shape[1]):
            dist += np.bitwise_count(q_words[start:stop, w, None] ^ d_words[None, :, w])
        rel = np.zeros((rows, nd), dtype=bool)
        for w in range(q_mask.shape[1]):
            rel |= (q_mask[start:stop, w, None] & d_mask[None, :, w]) != 0
        # One bincount per chunk: bin = (row, distance, relevant) flattened, built in place.
        flat = dist.astype(np.intp)
        flat <<= 1
        flat |= rel
        flat += (np.arange(rows, dtype=np.intp) * (2 * n_bins))[:, None]
        hist = np.bincount(flat.ravel(), minlength=rows * 2 * n_bins).reshape(rows, n_bins, 2)
        counts[start:stop] = hist.sum(axis=2)
        relevant[start:stop] = hist[:, :, 1]
    return counts, relevant


def precision_at_k(counts: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Expected precision of the top k per query, ties at the k-th distance counted fairly.

    counts, relevant : (nq, bits + 1) from `distance_histograms`
    returns : float64 (nq,)
    """
    n_db = int(counts[0].sum()) if len(counts) else 0
    if not 1 <= k <= n_db:
        raise ValueError(f"k must be between 1 and the database size {n_db}, got {k}")
    before = np.cumsum(counts, axis=1) - counts
    taken = np.clip(k - before, 0, counts)  # places each distance group fills in the top k
    share = np.divide(relevant, counts, out=np.zeros(counts.shape), where=counts > 0)
    return (taken * share).sum(axis=1) / k


def _harmonic_sums(start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """h1 = sum_{j=1..m} 1/(c+j) and h2 = sum_{j=1..m} (j-1)/(c+j) for c = start, m = length."""
    c = start.astype(np.float64)
    m = length.astype(np.float64)
    h1 = digamma(c + m + 1.0) - digamma(c + 1.0)
    h2 = m - (c + 1.0) * h1
    return h1, h2


def _group_sum(
    h1: np.ndarray, h2: np.ndarray, rel_before: np.ndarray, r: np.ndarray, n: np.ndarray
) -> np.ndarray:
    """E[sum of precision@i over relevant positions i] over n places of a tie group that hold r
    relevant items in random order.

    h1, h2: `_harmonic_sums` of those places; rel_before: relevant items ranked ahead of them.
    Place j is relevant with probability r/n and, given that, has on average (j-1)(r-1)/(n-1)
    relevant items ahead of it inside the group.
    """
    shape = np.broadcast_shapes(r.shape, n.shape)
    p = np.divide(r, n, out=np.zeros(shape), where=n > 0)
    inner = np.divide(r - 1, n - 1, out=np.zeros(shape), where=n > 1)
    return p * ((rel_before + 1) * h1 + inner * h2)


def mean_average_precision(
    counts: np.ndarray, relevant: np.ndarray, depth: int = 1000
) -> np.ndarray:
    """Expected AP@depth per query over random orderings of tied items (see module docstring).

    counts, relevant : (nq, bits + 1) from `distance_histograms`
    returns : float64 (nq,)
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    before = np.cumsum(counts, axis=1) - counts
    rel_before = np.cumsum(relevant, axis=1) - relevant
    taken = np.clip(depth - before, 0, counts)
    full = (taken == counts) & (counts > 0)
    partial = (taken > 0) & (taken < counts)  # at most one group per query straddles the cut

    h1, h2 = _harmonic_sums(before, counts)
    full_sum = np.where(full, _group_sum(h1, h2, rel_before, relevant, counts), 0.0)
    numerator = full_sum.sum(axis=1)
    full_relevant = np.where(full, relevant, 0).sum(axis=1)
    ap = np.divide(numerator, full_relevant, out=np.zeros(len(counts)), where=full_relevant > 0)

    rows, cols = np.nonzero(partial)
    if len(rows):
        ap[rows] = _straddling_ap(
            numerator[rows],
            before[rows, cols],
            rel_before[rows, cols],
            taken[rows, cols],
            relevant[rows, cols],
            counts[rows, cols],
        )
    return ap


def _straddling_ap(
    numerator: np.ndarray,
    start: np.ndarray,
    rel_before: np.ndarray,
    m: np.ndarray,
    r: np.ndarray,
    n: np.ndarray,
) -> np.ndarray:
    """E[AP] when m of a tie group of n (r relevant) fall inside the cut-off.

    The number x of relevant items among the m taken is hypergeometric; given x they sit uniformly
    among the m places, so E[sum | x] = (x/m)((R+1) h1 + (x-1)/(m-1) h2) (`_group_sum`), and
    E[AP] = sum_x P(x) (numerator + E[sum | x]) / (R + x).
    """
    h1, h2 = _harmonic_sums(start, m)
    out = np.empty(len(m))
    step = 1024  # queries per block: bounds the (block, depth + 1) grid
    for lo in range(0, len(m), step):
        sl = slice(lo, lo + step)
        mm, rr, nn = m[sl, None], r[sl, None], n[sl, None]
        x = np.arange(int(np.minimum(m[sl], r[sl]).max()) + 1)[None, :]
        valid = (x <= rr) & (x <= mm) & (mm - x <= nn - rr)
        xs = np.where(valid, x, 0)
        log_p = (
            _log_comb(rr, xs) + _log_comb(nn - rr, np.where(valid, mm - xs, 0)) - _log_comb(nn, mm)
        )
        p = np.where(valid, np.exp(log_p), 0.0)
        group = _group_sum(h1[sl, None], h2[sl, None], rel_before[sl, None], xs, mm)
        denominator = rel_before[sl, None] + xs
        value = np.divide(
            numerator[sl, None] + group,
            denominator,
            out=np.zeros(xs.shape),
            where=denominator > 0,
        )
        out[sl] = (p * value).sum(axis=1)
    return out


def _log_comb(n: np.ndarray, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


def radius_precision_recall(
    counts: np.ndarray, relevant: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-query precision and recall of a Hamming-ball lookup of the given radius.

    returns : (precision, recall), float64 (nq,) each; 0 where nothing (relevant) is returned.
    """
    if radius < 0:
        raise ValueError(f"radius must be non-negative, got {radius}")
    returned = counts[:, : radius + 1].sum(axis=1)
    hits = relevant[:, : radius + 1].sum(axis=1)
    total = relevant.sum(axis=1)
    precision = np.divide(hits, returned, out=np.zeros(len(counts)), where=returned > 0)
    recall = np.divide(hits, total, out=np.zeros(len(counts)), where=total > 0)
    return precision, recall


def pr_curve(counts: np.ndarray, relevant: np.ndarray) -> PRCurve:
    """Pooled precision and recall of Hamming-ball lookups at every radius 0..bits."""
    returned = np.cumsum(counts.sum(axis=0))
    hits = np.cumsum(relevant.sum(axis=0))
    total = hits[-1]
    precision = np.divide(hits, returned, out=np.zeros(len(hits)), where=returned > 0)
    recall = hits / total if total > 0 else np.zeros(len(hits))
    return PRCurve(
        radius=list(range(len(hits))),
        precision=[float(v) for v in precision],
        recall=[float(v) for v in recall],
    )


def evaluate_codes(
    query_codes: np.ndarray,
    db_codes: np.ndarray,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    *,
    k: int = 100,
    map_depth: int = 1000,
    radius: int = 2,
) -> RetrievalMetrics:
    """All the protocol's metrics for one set of codes.

    query_codes : uint8 (nq, bits // 8), db_codes : uint8 (nd, bits // 8), packed bits
    query_labels, db_labels : multi-hot (nq, n_labels), (nd, n_labels)
    k and map_depth are clipped to the database size.
    """
    counts, relevant = distance_histograms(query_codes, db_codes, query_labels, db_labels)
    n_db = len(db_codes)
    k = min(k, n_db)
    map_depth = min(map_depth, n_db)
    precision, recall = radius_precision_recall(counts, relevant, radius)
    empty = counts[:, : radius + 1].sum(axis=1) == 0
    return RetrievalMetrics(
        bits=query_codes.shape[1] * 8,
        n_queries=len(query_codes),
        n_database=n_db,
        k=k,
        precision_at_k=float(precision_at_k(counts, relevant, k).mean()),
        map_depth=map_depth,
        mean_average_precision=float(mean_average_precision(counts, relevant, map_depth).mean()),
        radius=radius,
        precision_within_radius=float(precision.mean()),
        recall_within_radius=float(recall.mean()),
        empty_within_radius=float(empty.mean()),
        pr_curve=pr_curve(counts, relevant),
    )


def cosine_knn_precision(
    query_features: Any,
    db_features: Any,
    query_labels: np.ndarray,
    db_labels: np.ndarray,
    *,
    k: int = 100,
    chunk: int = 256,
) -> float:
    """Precision@k of exact cosine k-NN on real-valued features (dense or SciPy sparse rows):
    the reference a hash has to approach. Items tied with the k-th similarity count by their
    expected relevance, as for codes (short texts tie at cosine 0 by the thousand)."""
    from sklearn.preprocessing import normalize

    queries = normalize(query_features).astype(np.float32)
    database = normalize(db_features).astype(np.float32)
    database_t = (
        database.T.tocsr() if hasattr(database, "tocsr") else np.ascontiguousarray(database.T)
    )
    db_hot = (db_labels > 0).astype(np.float32)
    k = min(k, database.shape[0])
    total = 0.0
    for start in range(0, queries.shape[0], chunk):
        sims = queries[start : start + chunk] @ database_t
        sims = sims.toarray() if hasattr(sims, "toarray") else np.asarray(sims)
        relevant = (query_labels[start : start + chunk] > 0).astype(np.float32) @ db_hot.T > 0
        kth = np.partition(sims, -k, axis=1)[:, -k][:, None]
        above, tied = sims > kth, sims == kth
        n_above = above.sum(axis=1)
        share_tied = (tied & relevant).sum(axis=1) / tied.sum(axis=1)
        total += float(((above & relevant).sum(axis=1) + (k - n_above) * share_tied).sum())
    return total / (k * queries.shape[0])
