r"""Counting ASCII text's tokens against a vocabulary in compiled code: a hash table of the terms.

``TextFeaturizer.counts`` spent most of a long document's time making a Python object for
every word (``bytes.split``) and looking each up in a dict. Here a whole batch of ASCII text is
one buffer, tokenised and looked up in one numba pass, with the default token pattern's rules
(``features.TOKEN_PATTERN``: an e-mail address is one token, other tokens are runs of two or
more word characters), lowercased:

- a run of address characters (``[\w.+@-]``, ``\w`` being ``[A-Za-z0-9_]`` on ASCII) without
  an "@" holds only plain words, the runs of word characters in it;
- a run with an "@" is tokenised as the pattern's ``findall`` over it would be: at each place
  an address if one starts there, else a word if one starts there, else the next place.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numba import njit

_FNV_OFFSET = np.uint64(14695981039346656037)
_FNV_PRIME = np.uint64(1099511628211)
_WORD, _LOCAL, _ADDRESS = 1, 2, 4  # \w; an address's local part [\w.+-]; any address byte
_AT, _DOT, _HYPHEN = ord("@"), ord("."), ord("-")


def _byte_tables() -> tuple[np.ndarray, np.ndarray]:
    kinds = np.zeros(256, np.uint8)
    for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
        kinds[c] = _WORD | _LOCAL | _ADDRESS
    for c in b".+-":
        kinds[c] = _LOCAL | _ADDRESS
    kinds[_AT] = _ADDRESS
    lower = np.arange(256, dtype=np.uint8)
    lower[ord("A") : ord("Z") + 1] += 32
    return kinds, lower


_KINDS, _LOWER = _byte_tables()


@njit(cache=True)
def _hash(data: np.ndarray, start: int, end: int) -> np.uint64:
    h = _FNV_OFFSET
    for i in range(start, end):
        h = (h ^ np.uint64(data[i])) * _FNV_PRIME
    return h


@njit(cache=True)
def _build(
    flat: np.ndarray, starts: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Open addressing: ``slots[s]`` is a term number or -1; ``hashes[t]`` term ``t``'s hash."""
    n = starts.shape[0] - 1
    slots = np.full(size, -1, np.int32)
    hashes = np.empty(n, np.uint64)
    mask = size - 1
    for t in range(n):
        h = _hash(flat, starts[t], starts[t + 1])
        hashes[t] = h
        s = np.int64(h & np.uint64(mask))
        while slots[s] >= 0:
            s = (s + 1) & mask
        slots[s] = t
    return slots, hashes


@njit(inline="always", cache=True)
def _find(
    text: np.ndarray, a: int, b: int, h: np.uint64, lower: np.ndarray, slots: np.ndarray,
    hashes: np.ndarray, flat: np.ndarray, starts: np.ndarray,
) -> int:  # fmt: skip
    """The term equal to ``text[a:b]`` lowercased (``h`` its hash), or -1."""
    mask = slots.shape[0] - 1
    s = np.int64(h & np.uint64(mask))
    while True:
        t = slots[s]
        if t < 0:
            return -1
        f = starts[t]
        if hashes[t] == h and starts[t + 1] - f == b - a:
            same = True
            for j in range(b - a):
                if flat[f + j] != lower[text[a + j]]:
                    same = False
                    break
            if same:
                return t
        s = (s + 1) & mask


@njit(inline="always", cache=True)
def _label_byte(kind: np.uint8, c: np.uint8) -> bool:
    return bool(kind & _WORD) or c == _HYPHEN


@njit(cache=True)
def _domain_end(text: np.ndarray, at: int, end: int, kinds: np.ndarray) -> int:
    r"""Where ``@[\w-]+(?:\.[\w-]+)+`` matching at ``at`` ends (-1: none does), in a run of
    address bytes ending at ``end``. Greedy is final: a label cut short is followed by no dot."""
    if at >= end or text[at] != _AT:
        return -1
    r = at + 1
    while r < end and _label_byte(kinds[text[r]], text[r]):
        r += 1
    if r == at + 1:
        return -1
    found = -1
    while r + 1 < end and text[r] == _DOT and _label_byte(kinds[text[r + 1]], text[r + 1]):
        r += 1
        while r < end and _label_byte(kinds[text[r]], text[r]):
            r += 1
        found = r
    return found


@njit(cache=True)
def _stretch(
    text: np.ndarray, run: int, end: int, kinds: np.ndarray, lower: np.ndarray,
    slots: np.ndarray, hashes: np.ndarray, flat: np.ndarray, starts: np.ndarray,
    columns: np.ndarray, out: np.ndarray, k: int,
) -> int:  # fmt: skip
    r"""TOKEN_PATTERN's ``findall`` over the run of address bytes ``text[run:end]`` that holds an
    "@" (the bytes around it are no word bytes): each known token's column into ``out`` from
    ``k``; returns the new ``k``. At each place, ``[\w.+-]+@...`` if it matches, else
    ``\b\w\w+\b``, else the next place; the local part from any place of a segment of local
    bytes ends where the segment does, so each segment's address is found once."""
    p = run
    local_end = run  # the local part from p ends here...
    address_end = -1  # ...and an address from p, if any, here
    while p < end:
        if p >= local_end:
            local_end = p
            while local_end < end and kinds[text[local_end]] & _LOCAL:
                local_end += 1
            address_end = _domain_end(text, local_end, end, kinds)
        m = address_end if local_end > p else -1
        if m < 0 and kinds[text[p]] & _WORD and (p == run or not kinds[text[p - 1]] & _WORD):
            m = p
            while m < end and kinds[text[m]] & _WORD:
                m += 1
            if m - p < 2:
                m = -1
        if m < 0:
            p += 1
            continue
        h = _FNV_OFFSET
        for j in range(p, m):
            h = (h ^ np.uint64(lower[text[j]])) * _FNV_PRIME
        t = _find(text, p, m, h, lower, slots, hashes, flat, starts)
        if t >= 0:
            out[k] = columns[t]
            k += 1
        p = m
    return k


@njit(cache=True)
def _columns(
    text: np.ndarray, ends: np.ndarray, kinds: np.ndarray, lower: np.ndarray, slots: np.ndarray,
    hashes: np.ndarray, flat: np.ndarray, starts: np.ndarray, columns: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Per document (``text[ends[d]:ends[d + 1]]``) its known terms' counts as CSR rows:
    ``(indptr, column indices sorted within each row, counts as float32)``.

    One pass reads words (hashing them as it goes) until an "@": the tokens already taken from
    its run of address bytes are dropped and the run is tokenised whole by ``_stretch``."""
    n_docs = ends.shape[0] - 1
    out = np.empty(text.shape[0] // 2 + 1, np.int32)  # a token takes two bytes or more
    counts = np.empty(out.shape[0], np.float32)
    indptr = np.zeros(n_docs + 1, np.int64)
    k = 0
    for d in range(n_docs):
        i, doc_end = ends[d], ends[d + 1]
        first = k
        run, run_k = i, k  # where the current run of address bytes starts; tokens before it
        word = -1  # where the current word starts
        h = _FNV_OFFSET
        while i < doc_end:
            c = text[i]
            kind = kinds[c]
            if kind & _WORD:
                if word < 0:
                    word, h = i, _FNV_OFFSET
                h = (h ^ np.uint64(lower[c])) * _FNV_PRIME
                i += 1
                continue
            if word >= 0:
                if i - word >= 2:
                    t = _find(text, word, i, h, lower, slots, hashes, flat, starts)
                    if t >= 0:
                        out[k] = columns[t]
                        k += 1
                word = -1
            if c == _AT:
                end = i
                while end < doc_end and kinds[text[end]] & _ADDRESS:
                    end += 1
                k = _stretch(text, run, end, kinds, lower, slots, hashes, flat, starts, columns,
                             out, run_k)  # fmt: skip
                i = end
                continue
            if not kind & _ADDRESS:
                run, run_k = i + 1, k
            i += 1
        if word >= 0 and doc_end - word >= 2:
            t = _find(text, word, doc_end, h, lower, slots, hashes, flat, starts)
            if t >= 0:
                out[k] = columns[t]
                k += 1
        k = _count_row(out, counts, first, k)
        indptr[d + 1] = k
    return indptr, out[:k], counts[:k]


@njit(cache=True)
def _count_row(columns: np.ndarray, counts: np.ndarray, first: int, end: int) -> int:
    """``columns[first:end]`` sorted and made unique in place, each one's count beside it in
    ``counts``; returns the new end."""
    if end == first:
        return end
    columns[first:end].sort()
    k = first
    counts[k] = 1.0
    for j in range(first + 1, end):
        if columns[j] == columns[k]:
            counts[k] += 1.0
        else:
            k += 1
            columns[k] = columns[j]
            counts[k] = 1.0
    return k + 1


class WordTable:
    """A vocabulary's terms (bytes -> column) for ``columns``; terms that no lowercased ASCII
    token can equal (other bytes, capitals) are left out."""

    def __init__(self, column_of: Mapping[bytes, int]) -> None:
        words = [(w, c) for w, c in column_of.items() if len(w) >= 2 and _a_token(w)]
        self._flat = np.frombuffer(b"".join(w for w, _ in words), np.uint8)
        lengths = np.fromiter((len(w) for w, _ in words), np.int64, len(words))
        self._starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._columns = np.fromiter((c for _, c in words), np.int32, len(words))
        size = 1 << max(4, (2 * len(words)).bit_length())  # at most half full
        self._slots, self._hashes = _build(self._flat, self._starts, size)
        self.counts(b"a@b.c d", np.array([0, 7]))  # compiled (or loaded) now, not on a request

    def counts(
        self, text: bytes, ends: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Documents ``text[ends[d]:ends[d + 1]]`` (ASCII) -> their term counts as CSR arrays
        ``(indptr, indices sorted within each row, float32 counts)``."""
        data = np.frombuffer(text, np.uint8)
        return _columns(
            data, ends, _KINDS, _LOWER, self._slots, self._hashes, self._flat, self._starts,
            self._columns,
        )  # fmt: skip


def _a_token(term: bytes) -> bool:
    return all(_KINDS[c] & _ADDRESS and _LOWER[c] == c for c in term)
