"""Code conversion and the immutable hash-table layout the kernels search.

Packed uint8 codes (``numpy.packbits`` order) become big-endian uint64 words, so byte ``b`` of a
code is byte ``b % 8`` (from the top) of word ``b // 8``. A *piece* is a run of at most 32 bits
inside one word; each table is keyed by one piece. A *group* of ``m`` tables whose pieces
partition the code is one multi-index hashing structure (Norouzi, Punjani & Fleet, CVPR 2012);
``m == 1`` (codes of at most 32 bits) is plain bit-flip enumeration over the whole code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from math import comb

import numpy as np

from models.code_width import CODE_WIDTHS
from service.index.errors import CodeWidthError

MAX_KEY_BITS = 32


@dataclass(frozen=True)
class Piece:
    """Bits ``[shift, shift + length)`` of word ``word`` (bit 0 = least significant)."""

    word: int
    shift: int
    length: int


def n_words(bits: int) -> int:
    return (bits + 63) // 64


def check_bits(bits: object) -> int:
    problem = CODE_WIDTHS.problem(bits)
    if problem is not None:
        raise CodeWidthError(problem)
    return int(bits)  # type: ignore[call-overload]


def to_words(codes: np.ndarray, bits: int) -> np.ndarray:
    """uint8 (n, bits // 8) packed codes -> uint64 (n, W) words (W = 1 for <= 64 bits, else 2)."""
    n = codes.shape[0]
    width = n_words(bits) * 8
    if codes.shape[1] == width:
        padded = np.ascontiguousarray(codes)
    else:
        padded = np.zeros((n, width), np.uint8)
        padded[:, : codes.shape[1]] = codes
    return padded.view(">u8").astype(np.uint64)


def from_words(words: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of ``to_words``."""
    raw = words.astype(">u8").view(np.uint8).reshape(words.shape[0], 8 * words.shape[1])
    return raw[:, : bits // 8].copy()


def split_pieces(bits: int, m: int) -> tuple[Piece, ...]:
    """Partition the code into ``m`` near-equal pieces of <= 32 bits that never cross a word."""
    valid = [min(64, bits - 64 * w) for w in range(n_words(bits))]
    per_word = [math.ceil(v / MAX_KEY_BITS) for v in valid]
    if not sum(per_word) <= m <= bits:
        raise ValueError(
            f"a {bits}-bit code splits into between {sum(per_word)} and {bits} tables, got {m}"
        )
    while sum(per_word) < m:  # give the next table to the word with the longest pieces
        w = max(range(len(valid)), key=lambda i: valid[i] / per_word[i])
        per_word[w] += 1
    pieces = []
    for w, (v, k) in enumerate(zip(valid, per_word, strict=True)):
        lo = 64 - v  # a code shorter than a word sits in its top bits
        for i in range(k):
            length = v // k + (1 if i < v % k else 0)
            pieces.append(Piece(w, lo, length))
            lo += length
    # Longest first: the refined schedule gives the first tables the larger flip radius.
    return tuple(sorted(pieces, key=lambda p: -p.length))


def default_groups(bits: int) -> tuple[int, ...]:
    """Table groups built for a width: bit-flip on the whole code where it fits in a key.

    (1,) up to 16 bits, (1, 2) up to 32, (2,) up to 64, then e.g. (4, 5) at 128 bits; each
    batch uses whichever group (or a scan) the cost model prefers.
    """
    if bits <= 16:
        return (1,)
    if bits <= 32:
        return (1, 2)  # whole-code bit-flip for small radii, two 16-bit halves for larger ones
    if bits <= 64:
        return (2,)  # two 32-bit halves: fits the 32 bytes per item budget at 64 bits
    # Two-word codes: the fewest <= 32-bit pieces (best on clustered codes, where short
    # pieces have crowded buckets) and one more (fewer probes when balls are sparse).
    fewest = sum(math.ceil(min(64, bits - 64 * w) / MAX_KEY_BITS) for w in range(n_words(bits)))
    return (fewest, fewest + 1)


def schedule(r: int, m: int) -> tuple[int, ...]:
    """Per-table flip radius for a ball of radius ``r`` over ``m`` tables (-1: skip the table).

    With ``r = s * m + a`` (``a < m``), an item within ``r`` has a piece within ``s`` among the
    first ``a + 1`` tables or a piece within ``s - 1`` among the rest: otherwise its distance
    would be at least ``(a + 1)(s + 1) + (m - a - 1) s = r + 1``.
    """
    s, a = divmod(r, m)
    return tuple(s if t <= a else s - 1 for t in range(m))


def probe_count(pieces: tuple[Piece, ...], rad: np.ndarray) -> int:
    return sum(
        sum(comb(p.length, i) for i in range(min(int(rt), p.length) + 1))
        for p, rt in zip(pieces, rad, strict=True)
        if rt >= 0
    )


def prefix_bits(n: int, length: int) -> int:
    # About 8 items per directory slot: 1-4 bytes of directory per item, short binary searches.
    return max(1, min(length, math.ceil(math.log2(max(n, 2))) - 3))


@dataclass(frozen=True)
class Tables:
    """The rebuilt (immutable) part of an index: every group's tables over the same items.

    ``pieces`` and each table's directory start follow from ``bits``, ``groups`` and
    ``tpbits``, so they are derived here rather than passed (or saved) alongside.
    """

    bits: int
    groups: tuple[int, ...]
    codes: np.ndarray  # uint64 (T, n, W): per table, codes sorted by the table's key
    rows: np.ndarray  # uint32 (T - 1, n): canonical row (table 0 order) of each item
    ids: np.ndarray  # int64 (n,): ids in canonical order
    dirs: np.ndarray  # uint32: concatenated prefix directories
    tpbits: np.ndarray  # int64 (T,): directory prefix bits per table
    plans: dict[object, object] = field(default_factory=dict, compare=False, repr=False)
    pieces: tuple[Piece, ...] = field(init=False)  # all tables, group after group
    dstart: np.ndarray = field(init=False, compare=False, repr=False)  # int64 (T,)
    # int64 (T,): each piece's word, shift and length, as flat arrays for the kernels
    twords: np.ndarray = field(init=False, compare=False, repr=False)
    tshift: np.ndarray = field(init=False, compare=False, repr=False)
    tlen: np.ndarray = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        pieces = tuple(p for m in self.groups for p in split_pieces(self.bits, m))
        sizes = (np.int64(1) << self.tpbits) + 1
        derived = {
            "pieces": pieces,
            "dstart": np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64),
            "twords": np.array([p.word for p in pieces], np.int64),
            "tshift": np.array([p.shift for p in pieces], np.int64),
            "tlen": np.array([p.length for p in pieces], np.int64),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    @property
    def n(self) -> int:
        return int(self.codes.shape[1])

    def group_range(self, g: int) -> tuple[int, int]:
        lo = sum(self.groups[:g])
        return lo, lo + self.groups[g]

    def nbytes(self) -> int:
        arrays = (self.codes, self.rows, self.ids, self.dirs)
        return sum(int(a.nbytes) for a in arrays)


def build_tables(bits: int, groups: tuple[int, ...], words: np.ndarray, ids: np.ndarray) -> Tables:
    """Sort the items once per table and build each table's prefix directory."""
    n, w = words.shape
    pieces = tuple(p for m in groups for p in split_pieces(bits, m))
    t_count = len(pieces)
    codes = np.empty((t_count, n, w), np.uint64)
    rows = np.empty((t_count - 1, n), np.uint32)
    dirs: list[np.ndarray] = []
    pbits = np.array([prefix_bits(n, p.length) for p in pieces], np.int64)
    inverse = np.empty(n, np.int64)
    canon_ids = ids
    for t, p in enumerate(pieces):
        keys = ((words[:, p.word] >> np.uint64(p.shift)) & np.uint64((1 << p.length) - 1)).astype(
            np.uint32
        )
        order = np.argsort(keys, kind="stable")
        codes[t] = words[order]
        if t == 0:
            inverse[order] = np.arange(n)
            canon_ids = np.ascontiguousarray(ids[order], dtype=np.int64)
        else:
            rows[t - 1] = inverse[order]
        prefix = keys[order] >> np.uint32(p.length - pbits[t])
        counts = np.bincount(prefix, minlength=1 << int(pbits[t]))
        directory = np.zeros(counts.size + 1, np.uint32)
        np.cumsum(counts, out=directory[1:])
        dirs.append(directory)
    return Tables(bits, groups, codes, rows, canon_ids, np.concatenate(dirs), pbits)
