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

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from llvmlite import ir
from numba import njit, objmode, typeof, types
from numba.core import cgutils
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


@intrinsic
def _prefetch(typingctx, arr, index):  # type: ignore[no-untyped-def]
    # LLVM's prefetch hint for ``arr[index]`` (``index`` a tuple): numba has none, and a
    # ball's buckets each start with a cache miss, which hints let the CPU overlap. Indexing
    # the array here makes no view, which numba would reference-count.
    sig = types.void(arr, index)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [
            context.cast(builder, v, t, types.intp)
            for v, t in zip(cgutils.unpack_tuple(builder, args[1]), idxty, strict=True)
        ]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i32, i8p = ir.IntType(32), ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])  # read, keep
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", cache=True)
def _distance(x0: np.uint64, x1: np.uint64, w: int) -> int:
    """Popcount of a code XOR the query, given its (first, last) words ``x0, x1``.

    Codes have one or two words; spelling both out (instead of looping over a row view) lets
    LLVM keep the query in registers. Callers pass words, not the array: numba reference
    counts an array passed to a call, in the loop, where it costs more than the distance.
    """
    d = _popcount(x0)
    if w == 2:
        d += _popcount(x1)
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
def _narrow(
    col: np.ndarray, shift: int, keylen: int, pbits: int, key: np.int64, lo: int, hi: int
) -> tuple[int, int]:
    """The bucket of ``key`` inside its directory slot ``[lo, hi)``; ``col``: the key words.

    Takes one array, not the bundle: numba reference-counts every array a call passes, and
    this runs once per probe.
    """
    if pbits == keylen or lo == hi:
        return lo, hi
    mask = (np.int64(1) << keylen) - 1
    a, b = lo, hi
    if hi - lo > 16:  # a short slot is one or two cache lines: a linear pass is cheaper
        while a < b:  # first item with item_key >= key
            mid = (a + b) >> 1
            if _key(col[mid], shift, mask) < key:
                a = mid + 1
            else:
                b = mid
    else:
        while a < hi and _key(col[a], shift, mask) < key:
            a += 1
    b = a
    while b < hi and _key(col[b], shift, mask) == key:  # buckets are mostly short
        b += 1
    return a, b


@njit(inline="always", cache=True)
def _slot(ix: IndexArrays, t: int, key: np.int64) -> tuple[np.int64, np.int64]:
    """The directory slot ``[lo, hi)`` of table ``t`` that holds ``key``'s bucket."""
    prefix = ix.dstart[t] + (key >> (ix.tlen[t] - ix.tpbits[t]))
    return np.int64(ix.dirs[prefix]), np.int64(ix.dirs[prefix + 1])


@njit(inline="always", cache=True)
def _bucket(ix: IndexArrays, t: int, key: np.int64) -> tuple[int, int]:
    lo, hi = _slot(ix, t, key)
    col = ix.codes[t, :, ix.twords[t]]
    return _narrow(col, ix.tshift[t], ix.tlen[t], ix.tpbits[t], key, lo, hi)


@njit(inline="always", cache=True)
def _seen_by(ix: IndexArrays, q: np.ndarray, t: int, j: int, u: int) -> int:
    """Distance between the query and item ``j`` of table ``t`` on table ``u``'s piece."""
    x = ix.codes[t, j, ix.twords[u]] ^ q[ix.twords[u]]
    return _popcount(np.uint64(_key(x, ix.tshift[u], (np.int64(1) << ix.tlen[u]) - 1)))


@njit(cache=True)
def _radix_sort(a: np.ndarray) -> None:
    """Sort int64 ``a`` in place: LSD radix on ``a - min``, only as many digits as needed.

    Large result lists are most of a big ball's cost; ids are usually dense row numbers, so
    two digits of up to 11 bits (a counting table that stays in L1) beat a comparison sort
    several times over.
    """
    n = a.shape[0]
    ulo = np.uint64(a.min())
    span = np.uint64(a.max()) - ulo  # exact modulo 2**64 because max >= min
    nbits = 1
    while nbits < 64 and (span >> np.uint64(nbits)) != np.uint64(0):
        nbits += 1
    most = 11 if n >= 1024 else 8  # a short list would spend its time on the counting table
    passes = (nbits + most - 1) // most
    width = (nbits + passes - 1) // passes
    mask = np.uint64((1 << width) - 1)
    src = a
    dst = np.empty(n, np.int64)
    count = np.empty((1 << width) + 1, np.int64)
    for k in range(passes):
        shift = np.uint64(k * width)
        count[:] = 0
        for i in range(n):
            count[np.int64(((np.uint64(src[i]) - ulo) >> shift) & mask) + 1] += 1
        for d in range(1 << width):
            count[d + 1] += count[d]
        for i in range(n):
            digit = np.int64(((np.uint64(src[i]) - ulo) >> shift) & mask)
            dst[count[digit]] = src[i]
            count[digit] += 1
        src, dst = dst, src
    if src is not a:  # an odd number of passes left the result in the scratch array
        a[:] = src


@njit(cache=True)
def _sort_ids(seg: np.ndarray) -> None:
    n = seg.shape[0]
    if n > 64:
        _radix_sort(seg)
    elif n > 16:
        seg.sort()
    else:
        for i in range(1, n):  # insertion sort: most groups are tiny
            v = seg[i]
            j = i - 1
            while j >= 0 and seg[j] > v:
                seg[j + 1] = seg[j]
                j -= 1
            seg[j + 1] = v


@njit(cache=True)
def _sort_hits(ids: np.ndarray, dist: np.ndarray, n: int, maxd: int) -> None:
    """Sort ``ids[:n], dist[:n]`` in place by (distance, id).

    A counting sort groups the hits by distance unless they already come grouped (a
    bit-flip ball and a scan write them that way); then each group is sorted by id.
    """
    if n <= 1:
        return
    grouped = True
    for i in range(1, n):
        grouped &= dist[i - 1] <= dist[i]
    if not grouped:
        counts = np.zeros(maxd + 2, np.int64)
        for i in range(n):
            counts[dist[i] + 1] += 1
        for d in range(maxd + 1):
            counts[d + 1] += counts[d]
        tmp = np.empty(n, np.int64)
        for i in range(n):
            d = dist[i]
            tmp[counts[d]] = ids[i]
            counts[d] += 1
        ids[:n] = tmp
        a = 0
        for d in range(maxd + 1):  # counts[d] is now the end of group d
            dist[a : counts[d]] = d
            a = counts[d]
    a = 0
    for i in range(1, n + 1):
        if i == n or dist[i] != dist[a]:
            _sort_ids(ids[a:i])
            a = i


@njit(cache=True)
def _probe(
    ix: IndexArrays,
    q: np.ndarray,
    rad: np.ndarray,
    lo: int,
    hi: int,
    buckets: np.ndarray,
    stats: np.ndarray,
) -> tuple[int, int]:
    """Every non-empty bucket the group's tables probe for ``q``: (buckets, candidates).

    ``buckets`` (int64 (4, probes of the group)) receives rows ``bt, ba, bb, bf``: bucket ``p``
    is items ``ba[p]:bb[p]`` of table ``bt[p]``, reached with ``bf[p]`` key flips, in table
    order and, within a table, in order of flips.
    """
    bt, ba, bb, bf = buckets[0], buckets[1], buckets[2], buckets[3]
    nb = 0
    for t in range(lo, hi):
        rt = rad[t - lo]
        if rt < 0:
            continue
        keylen = ix.tlen[t]
        qkey = _table_key(ix, t, q)
        limit = np.int64(1) << keylen
        first = nb
        # Every probe's directory slot first: the loads are independent, so the CPU overlaps
        # their cache misses instead of paying them one bucket at a time.
        for d in range(min(rt, keylen) + 1):
            v = (np.int64(1) << d) - 1
            while v < limit:
                slot_lo, slot_hi = _slot(ix, t, qkey ^ v)
                if slot_lo < slot_hi:
                    bt[nb] = v  # the flip mask until the slot is narrowed below
                    ba[nb] = slot_lo
                    bb[nb] = slot_hi
                    bf[nb] = d
                    nb += 1
                stats[0] += 1
                v = _next_mask(v, limit)
        col = ix.codes[t, :, ix.twords[t]]
        shift, pbits = ix.tshift[t], ix.tpbits[t]
        if pbits < keylen:
            # The first steps of every slot's search, asked for at once: the searches are
            # independent, so their first cache misses overlap.
            codes, w = ix.codes, ix.twords[t]
            for p in range(first, nb):
                a, b = ba[p], bb[p]
                if b - a > 16:
                    mid = (a + b) >> 1
                    _prefetch(codes, (t, mid, w))
                    _prefetch(codes, (t, (a + mid) >> 1, w))
                    _prefetch(codes, (t, (mid + b) >> 1, w))
                else:
                    _prefetch(codes, (t, a, w))
        for p in range(first, nb):
            ba[p], bb[p] = _narrow(col, shift, keylen, pbits, qkey ^ bt[p], ba[p], bb[p])
            bt[p] = t
    cands = 0
    for p in range(nb):
        cands += bb[p] - ba[p]
    stats[1] += cands
    return nb, cands


@njit(cache=True)
def _earlier(ix: IndexArrays, rad: np.ndarray, lo: int) -> np.ndarray:
    """Each table of the group as a row (key word, shift, mask, flip radius) for ``_verify``.

    A skipped table has radius -1: it sees nothing, as every popcount is larger.
    """
    earlier = np.empty((rad.shape[0], 4), np.int64)
    for u in range(rad.shape[0]):
        earlier[u, 0] = ix.twords[lo + u]
        earlier[u, 1] = ix.tshift[lo + u]
        earlier[u, 2] = (np.int64(1) << ix.tlen[lo + u]) - 1
        earlier[u, 3] = rad[u]
    return earlier


@njit(cache=True)
def _verify(
    ix: IndexArrays,
    q: np.ndarray,
    r: int,
    rad: np.ndarray,
    lo: int,
    earlier: np.ndarray,
    nb: int,
    buckets: np.ndarray,
    out_ids: np.ndarray,
    out_d: np.ndarray,
    at: int,
) -> tuple[int, int]:
    """Write the hits among ``_probe``'s buckets from ``at``: (end, start of pending rows).

    ``earlier`` is ``_earlier(ix, rad, lo)``.

    Every candidate is written and the end advances only past hits, so there is no branch per
    item; the output must have room for every candidate. The hits from ``pending`` on are
    canonical rows for ``_resolve`` (the bit-flip table 0 writes final ids): resolving them
    here would be two dependent cache misses per hit of another table's order.
    """
    bt, ba, bb, bf = buckets[0], buckets[1], buckets[2], buckets[3]
    count = at
    pending = at  # several tables: every hit is a canonical row
    if rad.shape[0] == 1:
        # One table keyed by the whole code: the key flips are the distance. The arrays are
        # unpacked here: numba reference counts each one a call or the bundle hands out, and
        # buckets of a few items would pay that many times over.
        ids, alive, rows = ix.ids, ix.alive, ix.rows
        for p in range(nb):  # ask for every bucket's lines first, so their misses overlap
            for j in range(ba[p], bb[p], 8):
                if bt[p] == 0:
                    _prefetch(ids, (j,))
                else:
                    _prefetch(rows, (bt[p] - 1, j))
            if bt[p] == 0:
                _prefetch(alive, (ba[p],))
        for p in range(nb):
            t, a, b, d = bt[p], ba[p], bb[p], bf[p]
            if t == 0:  # table 0's hits are final ids
                for j in range(a, b):
                    out_ids[count] = ids[j]
                    out_d[count] = d
                    count += alive[j]
                pending = count
            else:
                for j in range(a, b):
                    out_ids[count] = rows[t - 1, j]
                    out_d[count] = d
                    count += 1
        return count, pending
    # An item is reported by the first table that can see it: one whose piece of an earlier
    # table is within that table's radius is skipped. The test of the table just before is
    # kept in scalars, since with two tables it is the only test, and read from ``earlier``
    # in the loop it costs several times more.
    codes, rows = ix.codes, ix.rows
    w = q.shape[0]
    q0, q1 = q[0], q[w - 1]
    for p in range(nb):  # ask for every bucket's lines first, so their misses overlap
        for j in range(ba[p], bb[p], 8 // w):
            _prefetch(codes, (bt[p], j, 0))
    if w == 1 and rad.shape[0] == 2:
        return _verify_pair(ix, q0, r, lo, earlier, nb, buckets, out_ids, out_d, at), pending
    for p in range(nb):
        t = bt[p]
        k = t - lo  # earlier tables
        u = max(k - 1, 0)
        ew, es, em = earlier[u, 0], np.uint64(earlier[u, 1]), np.uint64(earlier[u, 2])
        er = earlier[u, 3] if k else -1
        qe = q[ew]
        for j in range(ba[p], bb[p]):
            dist = _distance(codes[t, j, 0] ^ q0, codes[t, j, w - 1] ^ q1, w)
            if dist > r:  # most candidates: a well-predicted branch beats doing the rest
                continue
            ok = np.int64(_popcount(((codes[t, j, ew] ^ qe) >> es) & em) > er)
            for v in range(k - 1):
                x = (codes[t, j, earlier[v, 0]] ^ q[earlier[v, 0]]) >> np.uint64(earlier[v, 1])
                ok &= np.int64(_popcount(x & np.uint64(earlier[v, 2])) > earlier[v, 3])
            out_ids[count] = j if t == 0 else np.int64(rows[t - 1, j])
            out_d[count] = dist
            count += ok
    return count, pending


@njit(cache=True)
def _verify_pair(
    ix: IndexArrays, q0: np.uint64, r: int, lo: int, earlier: np.ndarray, nb: int,
    buckets: np.ndarray, out_ids: np.ndarray, out_d: np.ndarray, at: int,
) -> int:  # fmt: skip
    """``_verify`` for the usual dense case: one-word codes, a group of two tables.

    Each candidate is one XOR, so both its distance and its piece of the first table come
    from the same word. Table 0's loop has no branch (a hit advances the end): dense balls
    make a sizeable share of candidates hits. Other tables' hits read the row map, which a
    non-hit should not: on sparse balls (uniform codes, buckets of a few items) that read is
    a cache miss per bucket, so those loops keep the branch.
    """
    bt, ba, bb = buckets[0], buckets[1], buckets[2]
    codes, rows = ix.codes, ix.rows
    es, em, er = np.uint64(earlier[0, 1]), np.uint64(earlier[0, 2]), earlier[0, 3]
    count = at
    for p in range(nb):
        t, a, b = bt[p], ba[p], bb[p]
        if t == lo:  # the group's first table: every hit is new
            if t == 0:
                for j in range(a, b):
                    dist = _popcount(codes[0, j, 0] ^ q0)
                    out_ids[count] = j
                    out_d[count] = dist
                    count += dist <= r
            else:
                for j in range(a, b):
                    dist = _popcount(codes[t, j, 0] ^ q0)
                    if dist <= r:
                        out_ids[count] = rows[t - 1, j]
                        out_d[count] = dist
                        count += 1
        else:  # the second table: skip what the first table's probes saw
            for j in range(a, b):
                x = codes[t, j, 0] ^ q0
                dist = _popcount(x)
                if dist <= r and _popcount((x >> es) & em) > er:
                    out_ids[count] = rows[t - 1, j]
                    out_d[count] = dist
                    count += 1
    return count


@njit(cache=True)
def _resolve(
    out_ids: np.ndarray, out_d: np.ndarray, start: int, end: int, ids: np.ndarray, alive: np.ndarray
) -> int:
    """Turn the canonical rows in ``out_ids[start:end]`` into live ids, in place; new end."""
    count = start
    for i in range(start, end):
        row = out_ids[i]
        out_ids[count] = ids[row]
        out_d[count] = out_d[i]
        count += alive[row]
    return count


@njit(cache=True)
def _scan(
    q: np.ndarray, r: int, codes: np.ndarray, ids: np.ndarray, out_ids: np.ndarray,
    out_d: np.ndarray, at: int,
) -> int:  # fmt: skip
    """Write every item of ``codes`` within ``r`` from ``at`` (room for all of them); new end."""
    w = q.shape[0]
    q0, q1 = q[0], q[w - 1]
    count = at
    for j in range(codes.shape[0]):
        dist = _distance(codes[j, 0] ^ q0, codes[j, w - 1] ^ q1, w)
        out_ids[count] = ids[j]
        out_d[count] = dist
        count += dist <= r
    return count


@njit(cache=True)
def _output(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Empty (ids int64, distances int32) arrays of ``n`` entries, allocated by NumPy.

    NumPy asks the kernel for huge pages on large arrays; numba's own allocator does not,
    and a large result written into 4 KiB pages spends most of its time in page faults
    (four to five times as long to fill on the machine of benchmarks/README.md).
    """
    with objmode(ids="int64[::1]", dist="int32[::1]"):
        ids = np.empty(n, np.int64)
        dist = np.empty(n, np.int32)
    return ids, dist


@njit(cache=True)
def _reserve(
    out_ids: np.ndarray, out_d: np.ndarray, used: int, need: int, done: int, queries: int
) -> tuple[np.ndarray, np.ndarray]:
    """Output arrays with room for ``need`` more entries after ``used`` (grown if short).

    ``used`` entries answer the first ``done`` of ``queries``: growth aims at the whole batch
    at that rate (plus a quarter), so a batch of large balls grows its output once or twice
    rather than at every doubling, each of which copies everything.
    """
    if used + need <= out_ids.shape[0]:
        return out_ids, out_d
    projected = used * queries // max(done, 1) * 5 // 4 + need
    grown_ids, grown_d = _output(max(used + need, 2 * out_ids.shape[0], projected))
    grown_ids[:used] = out_ids[:used]
    grown_d[:used] = out_d[:used]
    return grown_ids, grown_d


@njit(cache=True)
def _scan_dists(
    q: np.ndarray, codes: np.ndarray, alive: np.ndarray, dead: int, out: np.ndarray
) -> None:
    w = q.shape[0]
    q0, q1 = q[0], q[w - 1]
    for j in range(codes.shape[0]):
        out[j] = _distance(codes[j, 0] ^ q0, codes[j, w - 1] ^ q1, w) if alive[j] else dead


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
        d = _distance(codes[j, 0] ^ q0, codes[j, w - 1] ^ q1, w)
        if has_dead and not alive[j]:
            d = dead
        out[j] = d
        parts[j & 3, d] += 1
    for b in range(hist.shape[0]):
        hist[b] += parts[0, b] + parts[1, b] + parts[2, b] + parts[3, b]


@njit(cache=True)
def _group_starts(hist: np.ndarray, cut: int, at: int) -> np.ndarray:
    """Where each distance ``0..cut`` of a histogram starts when its items follow ``at``."""
    pos = np.empty(cut + 1, np.int64)
    for d in range(cut + 1):
        pos[d] = at
        at += hist[d]
    return pos


@njit(cache=True)
def _collect(
    dist: np.ndarray, ids: np.ndarray, cut: int, pos: np.ndarray, out_ids: np.ndarray,
    out_d: np.ndarray,
) -> None:  # fmt: skip
    """Write every item with ``dist <= cut`` at its distance's next place in ``pos``."""
    for j in range(dist.shape[0]):
        d = dist[j]
        if d <= cut:
            out_ids[pos[d]] = ids[j]
            out_d[pos[d]] = d
            pos[d] += 1


@njit(cache=True)
def _query_words(code: np.ndarray) -> np.ndarray:
    """One packed query (uint8 (bits // 8,)) as a (1, W) row of words, like ``to_words``."""
    out = np.zeros((1, (code.shape[0] + 7) // 8), np.uint64)
    for b in range(code.shape[0]):
        out[0, b // 8] |= np.uint64(code[b]) << np.uint64(8 * (7 - b % 8))
    return out


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
    ordered: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every item within ``r`` of each query: CSR ``(lims, ids, dist, stats)``, each query's
    hits sorted by (distance, id), or ``ordered=False`` as found.

    ``scan`` replaces the table probes by a popcount pass over table 0; ``max_probes`` is the
    group's probe count per query (it sizes the bucket scratch). ``stats`` is
    ``[probes, candidates]`` summed over the batch (scanned items count as candidates).

    Each query's hits are bounded before any is written (by its buckets' sizes, or by the
    scan's distance histogram), collected in a scratch buffer sized for that bound and
    reused across queries, so it stays in cache while they are written and sorted, then
    copied out: no query is ever answered twice for want of room.
    """
    nq = queries.shape[0]
    n = ix.codes.shape[1]
    nd = ix.dcodes.shape[0]
    lims = np.zeros(nq + 1, np.int64)
    out_ids = np.empty(max(16, 4 * nq), np.int64)
    out_d = np.empty(max(16, 4 * nq), np.int32)
    hit_ids = np.empty(1024, np.int64)  # one query's hits: reused, so it stays in cache
    hit_d = np.empty(1024, np.int32)
    stats = np.zeros(2, np.int64)
    buckets = np.empty((4, max_probes), np.int64)
    sdist = np.empty(n if scan else 0, np.uint8)  # bits + 1 <= 129 fits a byte
    bits = 64 * queries.shape[1]  # at least the width: distances index the histogram
    hist = np.zeros(bits + 2, np.int64)
    has_dead = scan and not ix.alive.all()
    earlier = _earlier(ix, rad, lo)
    total = 0
    for i in range(nq):
        q = queries[i]
        # Bound the hits first (a histogram of distances, or the buckets' sizes), so the
        # scratch has room for them before any is written.
        if scan:
            hist[:] = 0
            _scan_hist(q, ix.codes[0], ix.alive, has_dead, bits + 1, sdist, hist)
            stats[1] += n
            pos = _group_starts(hist, r, 0)
            need = pos[r] + hist[r]
        elif n > 0:
            nb, need = _probe(ix, q, rad, lo, hi, buckets, stats)
        else:
            need = 0
        if need + nd > hit_ids.shape[0]:
            hit_ids = np.empty(2 * (need + nd), np.int64)
            hit_d = np.empty(2 * (need + nd), np.int32)
        # Calls are guarded: each one reference-counts the arrays it is passed, which is a
        # good part of a query whose ball is empty.
        count = 0
        if scan:  # the hits in (distance, row) order
            _collect(sdist, ix.ids, r, pos, hit_ids, hit_d)
            count = need
        elif need:
            count, pending = _verify(ix, q, r, rad, lo, earlier, nb, buckets, hit_ids, hit_d, 0)
            if count > pending:
                count = _resolve(hit_ids, hit_d, pending, count, ix.ids, ix.alive)
        if nd:
            stats[1] += nd
            count = _scan(q, r, ix.dcodes, ix.dids, hit_ids, hit_d, count)
        if count:
            if count > 1 and ordered:
                _sort_hits(hit_ids, hit_d, count, r)
            if total + count > out_ids.shape[0]:
                out_ids, out_d = _reserve(out_ids, out_d, total, count, i, nq)
            out_ids[total : total + count] = hit_ids[:count]
            out_d[total : total + count] = hit_d[:count]
            total += count
        lims[i + 1] = total
    if 2 * total < out_ids.shape[0]:  # give back a mostly unused tail
        # A small result (a single query's, say) is allocated here: leaving numba for
        # NumPy's allocator costs microseconds, and small arrays gain nothing from huge pages.
        if total < 4096:
            trimmed_ids, trimmed_d = np.empty(total, np.int64), np.empty(total, np.int32)
        else:
            trimmed_ids, trimmed_d = _output(total)
        trimmed_ids[:] = out_ids[:total]
        trimmed_d[:] = out_d[:total]
        return lims, trimmed_ids, trimmed_d, stats
    return lims, out_ids[:total], out_d[:total], stats


@njit(nogil=True, cache=True)
def count_candidates(
    ix: IndexArrays, queries: np.ndarray, rad: np.ndarray, lo: int, hi: int, max_probes: int
) -> tuple[int, int]:
    """(probes, candidates) a group would spend on ``queries``, without verifying anything."""
    stats = np.zeros(2, np.int64)
    buckets = np.empty((4, max_probes), np.int64)
    for i in range(queries.shape[0]):
        _probe(ix, queries[i], rad, lo, hi, buckets, stats)
    return stats[0], stats[1]


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
            dist = _distance(codes[j, 0] ^ q0, codes[j, w - 1] ^ q1, w)
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
    with_ties: bool,
    ordered: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exact k nearest (ties by id) per query: CSR ``(lims, ids, dist, stats)``; ``with_ties``:
    also every further item at the k-th's distance (the shell that k cuts, whole), and then
    with ``ordered=False`` as found (no shell is cut, so no order is needed).

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
    has_dead = -1  # unknown until a query needs a scan: finding out is a pass over ``alive``
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
            if has_dead < 0:
                has_dead = 0 if alive.all() else 1
            _scan_hist(q, base, alive, has_dead > 0, bits + 1, sdist[:n], hist)
            for j in range(nd):
                hist[ddist[j]] += 1
            cut, total = _kth_distance(hist, kk, bits)
            if total > buf_ids.shape[0]:
                buf_ids = np.empty(2 * total, np.int64)
                buf_d = np.empty(2 * total, np.int32)
            pos = _group_starts(hist, cut, 0)
            _collect(sdist[:n], ids, cut, pos, buf_ids, buf_d)
            _collect(ddist, dids, cut, pos, buf_ids, buf_d)
            count = total
        elif kk > 0:
            # every item up to the k-th's distance is in the buffer: sort only those
            count = _keep_within(buf_ids, buf_d, count, _kth_distance(hist, kk, bits)[0])
        if kk > 0 and (ordered or not with_ties):
            _sort_hits(buf_ids, buf_d, count, bits)
        take = count if with_ties else kk
        end = lims[i] + take
        if end > out_ids.shape[0]:
            out_ids = _grown(out_ids, end, lims[i])
            out_d = _grown(out_d, end, lims[i])
        out_ids[lims[i] : end] = buf_ids[:take]
        out_d[lims[i] : end] = buf_d[:take]
        lims[i + 1] = end
    return lims, out_ids[: lims[nq]], out_d[: lims[nq]], stats


@njit(cache=True)
def _kth_distance(hist: np.ndarray, k: int, bits: int) -> tuple[int, int]:
    """The distance of the k-th item of a histogram over distances 0..bits, and how many items
    are that near (all of them, at ``bits``, when it holds fewer than k)."""
    total = 0
    for d in range(bits + 1):
        total += hist[d]
        if total >= k:
            return d, total
    return bits, total


@njit(cache=True)
def _keep_within(ids: np.ndarray, dist: np.ndarray, n: int, cut: int) -> int:
    """Move the first ``n`` items with ``dist <= cut`` to the front, in order; their count."""
    kept = 0
    for j in range(n):
        if dist[j] <= cut:
            ids[kept] = ids[j]
            dist[kept] = dist[j]
            kept += 1
    return kept


@njit(cache=True)
def _grown(a: np.ndarray, need: int, used: int) -> np.ndarray:
    """``a`` with room for at least ``need`` items (doubling), its first ``used`` kept."""
    out = np.empty(max(need, 2 * a.shape[0]), a.dtype)
    out[:used] = a[:used]
    return out


@njit(nogil=True, cache=True)
def radius_one(
    ix: IndexArrays, code: np.ndarray, r: int, rad: np.ndarray, lo: int, hi: int, scan: bool,
    max_probes: int, ordered: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``radius_search`` for one query given as its packed bytes (uint8 (bits // 8,))."""
    return radius_search(ix, _query_words(code), r, rad, lo, hi, scan, max_probes, ordered)


@njit(nogil=True, cache=True)
def knn_one(
    ix: IndexArrays, code: np.ndarray, k: int, bits: int, shell_probes: np.ndarray, lo: int,
    hi: int, n_live: int, probe_cost: float, cand_cost: float, scan_cost: float,
    with_ties: bool, ordered: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """``knn_search`` for one query given as its packed bytes (uint8 (bits // 8,))."""
    return knn_search(
        ix, _query_words(code), k, bits, shell_probes, lo, hi, n_live, probe_cost, cand_cost,
        scan_cost, with_ties, ordered,
    )  # fmt: skip


_ARRAY_TYPES: dict[tuple[int, ...], types.Type] = {}


def _numba_type(value: object) -> types.Type:
    """``numba.typeof(value)`` for the kernels' argument kinds, arrays' types memoised by flags."""
    if isinstance(value, np.ndarray):
        f = value.flags
        key = (value.dtype.num, value.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned)
        found = _ARRAY_TYPES.get(key)
        if found is None:
            found = _ARRAY_TYPES[key] = typeof(value)
        return found
    if isinstance(value, tuple):
        return types.BaseTuple.from_types([_numba_type(v) for v in value], type(value))
    return typeof(value)


def entry_point(kernel: Any, args: tuple[object, ...]) -> Callable[..., Any]:
    """``kernel``'s compiled code for arguments of exactly ``args``'s types, called directly.

    numba's dispatcher types every argument on every call, which for the dozen arrays of an
    ``IndexArrays`` costs several microseconds: most of a one-query search. A caller that
    passes arguments of these same types (arrays of the same dtype, dimensions, layout and
    flags; Python ints, floats and bools where these are) may call the result instead.
    Anything else would be misread, so callers key what they keep by what may vary.
    """
    sig = tuple(_numba_type(a) for a in args)
    found = kernel.overloads.get(sig)
    if found is None:
        kernel(*args)  # compiles (or loads) the overload
        found = kernel.overloads.get(sig)
    return kernel if found is None else found.entry_point
