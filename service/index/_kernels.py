"""Numba kernels behind ``HammingIndex``: probe, verify, scan, sort.

Layout they expect (built by ``service.index.layout``):

- ``codes``: uint64 array (T, n, W). Table ``t`` holds every base item's full code, sorted by
  that table's key (a substring of at most 32 bits that lies inside one word), so verifying the
  items of a bucket is a popcount over adjacent memory.
- ``rows``: uint32 array (T - 1, n). Table 0 is canonical (``ids`` and ``alive`` are in its
  order); ``rows[t - 1, j]`` is the canonical row of item ``j`` of table ``t``.
- ``dirs``: uint32 offsets, one directory per table, ``2**pbits[t] + 1`` entries starting at
  ``dstart[t]``: the items whose key starts with prefix ``p`` are ``dirs[dstart[t] + p]`` up to
  ``dirs[dstart[t] + p + 1]``. When ``pbits == keylen`` that range is the bucket; otherwise a
  binary search over the (sorted) keys inside it finds the bucket.
- ``dcodes``/``dids``: the delta buffer (items added since the last rebuild), scanned linearly.

They travel together as one ``IndexArrays`` tuple, built once per index snapshot.

A search uses the tables ``lo..hi`` of one group (multi-index hashing with ``m = hi - lo``
substrings; ``m == 1`` is plain bit-flip enumeration) with a per-table flip radius ``rad``.
An item is reported by the first table of the group that can see it (its substring distance is
within that table's radius), which makes results duplicate-free without a "seen" set.

All kernels are ``nogil`` so a thread pool scales, and ``cache=True`` so only the first process
on a machine pays for compilation.
"""

# Numba's decorators and intrinsics are untyped to mypy, and numba works in NumPy scalars
# where the annotations say int; the annotations document intent, numba checks the types.
# mypy: disable-error-code="call-arg,var-annotated,return-value,arg-type"

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


class IndexArrays(NamedTuple):
    """Everything a kernel reads about one snapshot of an index (see the module docstring)."""

    codes: np.ndarray  # uint64 (T, n, W)
    rows: np.ndarray  # uint32 (T - 1, n)
    ids: np.ndarray  # int64 (n,), canonical order
    alive: np.ndarray  # bool (n,), canonical order
    dirs: np.ndarray  # uint32, every table's directory
    dstart: np.ndarray  # int64 (T,)
    twords: np.ndarray  # int64 (T,): each table's key word, shift, length, directory bits
    tshift: np.ndarray
    tlen: np.ndarray
    tpbits: np.ndarray
    dcodes: np.ndarray  # uint64 (n_delta, W)
    dids: np.ndarray  # int64 (n_delta,)


@intrinsic
def _popcount(typingctx, x):  # type: ignore[no-untyped-def]
    # LLVM's ctpop becomes one POPCNT instruction; numba has no builtin for it.
    sig = types.int64(types.uint64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.ctpop(args[0])

    return sig, codegen


@njit(inline="always", cache=True)
def _distance(codes: np.ndarray, j: int, q0: np.uint64, q1: np.uint64, w: int) -> int:
    # Codes have one or two words; spelling both out (instead of looping over a row view) lets
    # LLVM keep the query in registers: it is several times faster than a generic loop.
    d = _popcount(codes[j, 0] ^ q0)
    if w == 2:
        d += _popcount(codes[j, 1] ^ q1)
    return d


@njit(inline="always", cache=True)
def _key(word: np.uint64, shift: np.int64, mask: np.int64) -> np.int64:
    return np.int64(word >> np.uint64(shift)) & mask


@njit(inline="always", cache=True)
def _table_key(ix: IndexArrays, t: int, q: np.ndarray) -> np.int64:
    """Table ``t``'s key of the code ``q`` (a row of words)."""
    return _key(q[ix.twords[t]], ix.tshift[t], (np.int64(1) << ix.tlen[t]) - 1)


@njit(inline="always", cache=True)
def _next_mask(v: np.int64, limit: np.int64) -> np.int64:
    """The next larger mask with as many bits set as ``v`` (Gosper's hack); ``limit`` after 0.

    Starting from ``(1 << d) - 1``, this walks every ``keylen``-bit mask with ``d`` bits set
    while the result stays below ``limit = 1 << keylen``.
    """
    if v == 0:
        return limit
    c = v & -v
    s = v + c
    return (((s ^ v) >> 2) // c) | s


@njit(cache=True)
def _narrow(ix: IndexArrays, t: int, key: np.int64, lo: int, hi: int) -> tuple[int, int]:
    """The bucket of ``key`` inside its directory slot ``[lo, hi)`` of table ``t``."""
    keylen = ix.tlen[t]
    if ix.tpbits[t] == keylen or lo == hi:
        return lo, hi
    word, shift = ix.twords[t], ix.tshift[t]
    mask = (np.int64(1) << keylen) - 1
    codes = ix.codes[t]
    a, b = lo, hi
    while a < b:  # first item with item_key >= key
        mid = (a + b) >> 1
        if _key(codes[mid, word], shift, mask) < key:
            a = mid + 1
        else:
            b = mid
    start = a
    b = hi
    while a < b:  # first item with item_key > key
        mid = (a + b) >> 1
        if _key(codes[mid, word], shift, mask) <= key:
            a = mid + 1
        else:
            b = mid
    return start, a


@njit(inline="always", cache=True)
def _slot(ix: IndexArrays, t: int, key: np.int64) -> tuple[np.int64, np.int64]:
    """The directory slot ``[lo, hi)`` of table ``t`` that holds ``key``'s bucket."""
    prefix = ix.dstart[t] + (key >> (ix.tlen[t] - ix.tpbits[t]))
    return np.int64(ix.dirs[prefix]), np.int64(ix.dirs[prefix + 1])


@njit(cache=True)
def _bucket(ix: IndexArrays, t: int, key: np.int64) -> tuple[int, int]:
    lo, hi = _slot(ix, t, key)
    return _narrow(ix, t, key, lo, hi)


@njit(inline="always", cache=True)
def _seen_by(ix: IndexArrays, q: np.ndarray, t: int, j: int, u: int) -> int:
    """Distance between the query and item ``j`` of table ``t`` on table ``u``'s piece."""
    x = ix.codes[t, j, ix.twords[u]] ^ q[ix.twords[u]]
    return _popcount(np.uint64(_key(x, ix.tshift[u], (np.int64(1) << ix.tlen[u]) - 1)))


@njit(cache=True)
def _radix_sort(a: np.ndarray) -> None:
    """Sort int64 ``a`` in place: LSD radix on bytes of ``a - min``, only as many as needed.

    Large result lists are most of a big ball's cost; ids are usually dense row numbers, so
    two or three byte passes beat a comparison sort several times over.
    """
    n = a.shape[0]
    lo = a.min()
    span = np.uint64(a.max()) - np.uint64(lo)  # exact modulo 2**64 because max >= min
    ulo = np.uint64(lo)
    src = a
    dst = np.empty(n, np.int64)
    shift = np.uint64(0)
    count = np.zeros(257, np.int64)
    while True:
        count[:] = 0
        for i in range(n):
            count[np.int64(((np.uint64(src[i]) - ulo) >> shift) & np.uint64(255)) + 1] += 1
        for d in range(256):
            count[d + 1] += count[d]
        for i in range(n):
            digit = np.int64(((np.uint64(src[i]) - ulo) >> shift) & np.uint64(255))
            dst[count[digit]] = src[i]
            count[digit] += 1
        src, dst = dst, src
        shift += np.uint64(8)
        if shift >= np.uint64(64) or (span >> shift) == np.uint64(0):
            break
    if src is not a:  # an odd number of passes left the result in the scratch array
        a[:] = src


@njit(cache=True)
def _sort_hits(ids: np.ndarray, dist: np.ndarray, n: int, maxd: int) -> None:
    """Sort ``ids[:n], dist[:n]`` in place by (distance, id): counting sort on distance."""
    if n <= 1:
        return
    counts = np.zeros(maxd + 2, np.int64)
    for i in range(n):
        counts[dist[i] + 1] += 1
    for d in range(maxd + 1):
        counts[d + 1] += counts[d]
    tmp = np.empty(n, np.int64)
    pos = counts[: maxd + 1].copy()
    for i in range(n):
        d = dist[i]
        tmp[pos[d]] = ids[i]
        pos[d] += 1
    for d in range(maxd + 1):
        a, b = counts[d], counts[d + 1]
        seg = tmp[a:b]
        if b - a > 64:
            _radix_sort(seg)
        elif b - a > 16:
            seg.sort()
        else:
            for i in range(1, b - a):  # insertion sort: most groups are tiny
                v = seg[i]
                j = i - 1
                while j >= 0 and seg[j] > v:
                    seg[j + 1] = seg[j]
                    j -= 1
                seg[j + 1] = v
        for i in range(a, b):
            ids[i] = tmp[i]
            dist[i] = d


@njit(cache=True)
def _ball(
    ix: IndexArrays,
    q: np.ndarray,
    r: int,
    rad: np.ndarray,
    lo: int,
    hi: int,
    buf_ids: np.ndarray,
    buf_d: np.ndarray,
    count: int,
    stats: np.ndarray,
    pkeys: np.ndarray,
    plo: np.ndarray,
    phi: np.ndarray,
) -> int:
    """Append every live base item within ``r`` of ``q`` (multi-index probing); new count.

    Hits past the buffer's end are counted, not stored: the caller grows the buffer and asks
    again. (Growing in here would make numba refcount the buffers on every item.)
    """
    cap = buf_ids.shape[0]
    w = q.shape[0]
    q0, q1 = q[0], q[w - 1]
    for t in range(lo, hi):
        rt = rad[t - lo]
        if rt < 0:
            continue
        keylen = ix.tlen[t]
        codes = ix.codes[t]
        qkey = _table_key(ix, t, q)
        limit = np.int64(1) << keylen
        # Phase 1: every probe's key and directory slot. The loads are independent, so the
        # CPU overlaps their cache misses instead of paying them one bucket at a time.
        np_ = 0
        for d in range(min(rt, keylen) + 1):
            v = (np.int64(1) << d) - 1
            while v < limit:
                key = qkey ^ v
                lo_, hi_ = _slot(ix, t, key)
                if lo_ < hi_:  # the caller sizes the scratch for every probe of a table
                    pkeys[np_] = key
                    plo[np_] = lo_
                    phi[np_] = hi_
                    np_ += 1
                stats[0] += 1
                v = _next_mask(v, limit)
        # Phase 2: narrow each slot to its bucket and verify the bucket's codes.
        for p in range(np_):
            a, b = _narrow(ix, t, pkeys[p], plo[p], phi[p])
            stats[1] += b - a
            for j in range(a, b):
                dist = _distance(codes, j, q0, q1, w)
                if dist > r:
                    continue
                seen = False
                for u in range(lo, t):  # reported already by an earlier table?
                    ru = rad[u - lo]
                    if ru >= 0 and _seen_by(ix, q, t, j, u) <= ru:
                        seen = True
                        break
                if seen:
                    continue
                if t == 0:
                    if not ix.alive[j]:
                        continue
                    if count < cap:
                        buf_ids[count] = ix.ids[j]
                        buf_d[count] = dist
                elif count < cap:
                    # Another table's row order: resolving the id and tombstone here would be
                    # two dependent cache misses per hit; ``_resolve`` batches them later.
                    buf_ids[count] = ix.rows[t - 1, j]
                    buf_d[count] = -1 - dist
                count += 1
    return count


@njit(cache=True)
def _resolve(
    buf_ids: np.ndarray, buf_d: np.ndarray, count: int, ids: np.ndarray, alive: np.ndarray
) -> int:
    """Turn ``_ball``'s pending hits (canonical row, ``-1 - distance``) into live ids.

    The loads are independent, so their cache misses overlap. Returns the new count.
    """
    out = 0
    for i in range(count):
        item, d = buf_ids[i], buf_d[i]
        if d < 0:  # pending: ``item`` is a canonical row
            if not alive[item]:
                continue
            item, d = ids[item], -1 - d
        buf_ids[out] = item
        buf_d[out] = d
        out += 1
    return out


@njit(cache=True)
def _scan(
    q: np.ndarray,
    r: int,
    codes: np.ndarray,
    ids: np.ndarray,
    alive: np.ndarray,
    buf_ids: np.ndarray,
    buf_d: np.ndarray,
    count: int,
) -> int:
    """Append every live item of ``codes`` (2-D, or table 0 of 3-D) within ``r``; new count."""
    cap = buf_ids.shape[0]
    w = q.shape[0]
    q0, q1 = q[0], q[w - 1]
    for j in range(codes.shape[0]):
        dist = _distance(codes, j, q0, q1, w)
        if dist <= r and alive[j]:
            if count < cap:
                buf_ids[count] = ids[j]
                buf_d[count] = dist
            count += 1
    return count


@njit(cache=True)
def _scan_dists(
    q: np.ndarray, codes: np.ndarray, alive: np.ndarray, dead: int, out: np.ndarray
) -> None:
    w = q.shape[0]
    q0, q1 = q[0], q[w - 1]
    for j in range(codes.shape[0]):
        out[j] = _distance(codes, j, q0, q1, w) if alive[j] else dead


@njit(cache=True)
def _scan_hist(
    q: np.ndarray,
    codes: np.ndarray,
    alive: np.ndarray,
    has_dead: bool,
    dead: int,
    out: np.ndarray,
    hist: np.ndarray,
) -> None:
    """One pass: every distance into ``out`` (uint8; ``dead`` for tombstones) and ``hist``."""
    w = q.shape[0]
    q0, q1 = q[0], q[w - 1]
    # Four interleaved histograms: neighbouring items mostly share a distance, and one
    # counter would make every increment wait for the previous one.
    parts = np.zeros((4, hist.shape[0]), np.int64)
    for j in range(codes.shape[0]):
        d = _distance(codes, j, q0, q1, w)
        if has_dead and not alive[j]:
            d = dead
        out[j] = d
        parts[j & 3, d] += 1
    for b in range(hist.shape[0]):
        hist[b] += parts[0, b] + parts[1, b] + parts[2, b] + parts[3, b]


@njit(cache=True)
def _collect(
    dist: np.ndarray, ids: np.ndarray, cut: int, buf_ids: np.ndarray, buf_d: np.ndarray, count: int
) -> int:
    cap = buf_ids.shape[0]
    for j in range(dist.shape[0]):
        if dist[j] <= cut:
            if count < cap:
                buf_ids[count] = ids[j]
                buf_d[count] = dist[j]
            count += 1
    return count


@njit(cache=True)
def _append(
    out_ids: np.ndarray, out_d: np.ndarray, total: int, ids: np.ndarray, dist: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    if total + n > out_ids.shape[0]:
        cap = max(total + n, 2 * out_ids.shape[0])
        grown_ids = np.empty(cap, np.int64)
        grown_d = np.empty(cap, np.int32)
        grown_ids[:total] = out_ids[:total]
        grown_d[:total] = out_d[:total]
        out_ids, out_d = grown_ids, grown_d
    out_ids[total : total + n] = ids[:n]
    out_d[total : total + n] = dist[:n]
    return out_ids, out_d


@njit(nogil=True, cache=True)
def radius_search(
    ix: IndexArrays,
    queries: np.ndarray,
    r: int,
    rad: np.ndarray,
    lo: int,
    hi: int,
    scan: bool,
    max_probes: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every item within ``r`` of each query: CSR ``(lims, ids, dist, stats)``.

    ``scan`` replaces the table probes by a popcount pass over table 0; ``max_probes`` bounds
    the probes of any one table (it sizes the probe scratch). ``stats`` is
    ``[probes, candidates]`` summed over the batch (scanned items count as candidates).
    """
    nq = queries.shape[0]
    n = ix.codes.shape[1]
    nd = ix.dcodes.shape[0]
    base = ix.codes[0]
    dalive = np.ones(nd, np.bool_)
    lims = np.zeros(nq + 1, np.int64)
    out_ids = np.empty(max(16, 4 * nq), np.int64)
    out_d = np.empty(max(16, 4 * nq), np.int32)
    buf_ids = np.empty(1024, np.int64)
    buf_d = np.empty(1024, np.int32)
    stats = np.zeros(2, np.int64)
    pkeys = np.empty(max_probes, np.int64)
    plo = np.empty(max_probes, np.int64)
    phi = np.empty(max_probes, np.int64)
    total = 0
    for i in range(nq):
        q = queries[i]
        while True:
            p0, p1 = stats[0], stats[1]
            count = 0
            if scan:
                stats[1] += n
                count = _scan(q, r, base, ix.ids, ix.alive, buf_ids, buf_d, count)
            elif n > 0:
                count = _ball(ix, q, r, rad, lo, hi, buf_ids, buf_d, count, stats, pkeys, plo, phi)
            stats[1] += nd
            count = _scan(q, r, ix.dcodes, ix.dids, dalive, buf_ids, buf_d, count)
            if count <= buf_ids.shape[0]:
                break
            stats[0], stats[1] = p0, p1  # too many hits for the buffer: grow it, run again
            buf_ids = np.empty(2 * count, np.int64)
            buf_d = np.empty(2 * count, np.int32)
        if not scan:
            count = _resolve(buf_ids, buf_d, count, ix.ids, ix.alive)
        _sort_hits(buf_ids, buf_d, count, r)
        out_ids, out_d = _append(out_ids, out_d, total, buf_ids, buf_d, count)
        total += count
        lims[i + 1] = total
    return lims, out_ids[:total].copy(), out_d[:total].copy(), stats


@njit(nogil=True, cache=True)
def count_candidates(
    ix: IndexArrays, queries: np.ndarray, rad: np.ndarray, lo: int, hi: int
) -> tuple[int, int]:
    """(probes, candidates) a group would spend on ``queries``, without verifying anything."""
    probes = 0
    cands = 0
    for i in range(queries.shape[0]):
        q = queries[i]
        for t in range(lo, hi):
            rt = rad[t - lo]
            if rt < 0:
                continue
            keylen = ix.tlen[t]
            qkey = _table_key(ix, t, q)
            limit = np.int64(1) << keylen
            for d in range(min(rt, keylen) + 1):
                v = (np.int64(1) << d) - 1
                while v < limit:
                    a, b = _bucket(ix, t, qkey ^ v)
                    probes += 1
                    cands += b - a
                    v = _next_mask(v, limit)
    return probes, cands


@njit(cache=True)
def _shell(
    ix: IndexArrays,
    q: np.ndarray,
    t: int,
    s: int,
    lo: int,
    hi: int,
    buf_ids: np.ndarray,
    buf_d: np.ndarray,
    count: int,
    hist: np.ndarray,
    stats: np.ndarray,
) -> int:
    """Stage (s, t) of incremental multi-index k-NN: probe table ``t`` at exactly ``s`` flips.

    Stages run in the order (0, lo), (0, lo + 1), ..., (1, lo), ...; an item is new at stage
    (s, t) unless an earlier stage saw it: a table u < t within s flips or a table u > t within
    s - 1. Every live new item is appended (any distance) and counted in ``hist``.
    """
    keylen = ix.tlen[t]
    if s > keylen:
        return count
    cap = buf_ids.shape[0]
    w = q.shape[0]
    q0, q1 = q[0], q[w - 1]
    codes = ix.codes[t]
    qkey = _table_key(ix, t, q)
    limit = np.int64(1) << keylen
    v = (np.int64(1) << s) - 1
    while v < limit:
        a, b = _bucket(ix, t, qkey ^ v)
        stats[0] += 1
        stats[1] += b - a
        for j in range(a, b):
            seen = False
            for u in range(lo, hi):
                if u == t:
                    continue
                du = _seen_by(ix, q, t, j, u)
                if du < s or (u < t and du == s):
                    seen = True
                    break
            if seen:
                continue
            row = j if t == 0 else np.int64(ix.rows[t - 1, j])
            if not ix.alive[row]:
                continue
            dist = _distance(codes, j, q0, q1, w)
            hist[dist] += 1
            if count < cap:
                buf_ids[count] = ix.ids[row]
                buf_d[count] = dist
            count += 1
        v = _next_mask(v, limit)
    return count


@njit(nogil=True, cache=True)
def knn_search(
    ix: IndexArrays,
    queries: np.ndarray,
    k: int,
    bits: int,
    shell_probes: np.ndarray,
    lo: int,
    hi: int,
    n_live: int,
    probe_cost: float,
    cand_cost: float,
    scan_cost: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact k nearest (ties by id) per query: CSR ``(lims, ids, dist, stats)``.

    Grows the Hamming ball one table shell at a time (incremental multi-index search): after
    stage (s, t) every item within ``m * s + (t - lo)`` has been seen, so the search stops once
    that ball holds ``k`` items. ``shell_probes[t - lo, s]`` is the stage's probe count; when
    the work done plus the next stage would exceed a popcount pass over everything, the query
    is answered by a scan instead. ``stats``: ``[probes, candidates, scanned queries, largest
    ball radius reached]``.
    """
    codes, ids, alive, dcodes, dids = ix.codes, ix.ids, ix.alive, ix.dcodes, ix.dids
    nq = queries.shape[0]
    n = codes.shape[1]
    nd = dcodes.shape[0]
    m = hi - lo
    base = codes[0]
    dalive = np.ones(nd, np.bool_)
    kk = min(k, n_live)
    lims = np.zeros(nq + 1, np.int64)
    out_ids = np.empty(max(1, nq * kk), np.int64)
    out_d = np.empty(max(1, nq * kk), np.int32)
    buf_ids = np.empty(max(1024, 4 * kk, 2 * nd), np.int64)
    buf_d = np.empty(max(1024, 4 * kk, 2 * nd), np.int32)
    sdist = np.empty(0, np.uint8)  # bits + 1 <= 129 fits a byte: a quarter of the traffic
    ddist = np.empty(nd, np.int32)
    hist = np.zeros(bits + 2, np.int64)
    saved = np.zeros(bits + 2, np.int64)
    stats = np.zeros(4, np.int64)
    full_scan = (n + nd) * scan_cost
    has_dead = not alive.all()
    max_shell = shell_probes.shape[1] - 1
    for i in range(nq):
        q = queries[i]
        # Once most of the batch has needed a scan (balls too sparse, e.g. uniform codes),
        # scan directly instead of paying for the shells first.
        use_scan = kk == 0 or n == 0 or (i >= 8 and 2 * stats[2] > i)
        hist[:] = 0
        _scan_dists(q, dcodes, dalive, bits + 1, ddist)
        count = 0
        for j in range(nd):
            buf_ids[j] = dids[j]
            buf_d[j] = ddist[j]
            hist[ddist[j]] += 1
            count += 1
        spent = nd * cand_cost
        s = 0
        t = lo
        while not use_scan:
            if s > max_shell:
                break  # every table fully enumerated: every item has been seen
            nxt = shell_probes[t - lo, s] * probe_cost
            if spent + nxt > full_scan:
                use_scan = True
                break
            p0, p1 = stats[0], stats[1]
            saved[:] = hist
            start = count
            count = _shell(ix, q, t, s, lo, hi, buf_ids, buf_d, count, hist, stats)
            if count > buf_ids.shape[0]:  # grow the buffer, keep what fits, redo the stage
                stats[0], stats[1] = p0, p1
                hist[:] = saved
                grown_ids = np.empty(2 * count, np.int64)
                grown_d = np.empty(2 * count, np.int32)
                grown_ids[:start] = buf_ids[:start]
                grown_d[:start] = buf_d[:start]
                buf_ids, buf_d = grown_ids, grown_d
                count = start
                continue
            spent += nxt + (stats[1] - p1) * cand_cost
            radius = m * s + (t - lo)
            within = 0
            for d in range(min(radius, bits) + 1):
                within += hist[d]
            if within >= kk:
                stats[3] = max(stats[3], radius)
                break
            t += 1
            if t == hi:
                t = lo
                s += 1
        if use_scan and kk > 0:
            stats[2] += 1
            stats[1] += n + nd
            if sdist.shape[0] < n:
                sdist = np.empty(n, np.uint8)
            hist[:] = 0
            _scan_hist(q, base, alive, has_dead, bits + 1, sdist[:n], hist)
            for j in range(nd):
                hist[ddist[j]] += 1
            total = 0
            cut = 0
            for d in range(bits + 1):
                total += hist[d]
                if total >= kk:
                    cut = d
                    break
            if total > buf_ids.shape[0]:
                buf_ids = np.empty(2 * total, np.int64)
                buf_d = np.empty(2 * total, np.int32)
            count = _collect(sdist[:n], ids, cut, buf_ids, buf_d, 0)
            count = _collect(ddist, dids, cut, buf_ids, buf_d, count)
        if kk > 0:
            _sort_hits(buf_ids, buf_d, count, bits)
        out_ids, out_d = _append(out_ids, out_d, lims[i], buf_ids, buf_d, kk)
        lims[i + 1] = lims[i] + kk
    return lims, out_ids[: nq * kk].copy(), out_d[: nq * kk].copy(), stats
