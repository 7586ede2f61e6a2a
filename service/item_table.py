"""A collection's items in memory: number -> (user id, metadata JSON), with no Python object
per item.

Records sit in one bytearray arena, ``[id UTF-8][metadata JSON]``, appended and never changed in
place; a ``NumArray`` of int64 points each number at its record with both lengths,
``offset << 24 | id length << 13 | metadata length`` (-1: no item), so a record costs its bytes
and the pointer's 8. Metadata of 8,191 bytes or more has its u32 length before it and the
length field all ones. An overwrite appends a new record and
repoints the number; once dead records outweigh live ones the writer copies the live ones into a
new arena and publishes (pointers, arena) in one assignment. Readers take that pair once
(``locate``), so a pointer they read is valid in the arena they hold; they only slice the arena
(a buffer export would make the writer's next append fail).

Ids order as their UTF-8 bytes, which is the code-point order of the strings (the service's
tie-break): ranking compares bytes and decodes only the ids it returns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from service.num_array import NumArray
from service.store import metadata_json

_META_BITS = 13  # the metadata length's share of a pointer
_LONG = (1 << _META_BITS) - 1  # metadata this long or longer: its length sits in the arena
_ID_BITS = 11  # ids are at most 256 characters, 1,024 bytes
_ID_MASK = (1 << _ID_BITS) - 1
_AT = _META_BITS + _ID_BITS  # the offset's place; 39 bits of it keep pointers positive
_LEN = 4  # bytes of a long metadata's length


@dataclass(slots=True)  # not frozen: built on every search, and frozen init is slower
class Records:
    """The arena a set of pointers was read with: decodes the records they point at."""

    arena: bytearray

    def key(self, ptr: int) -> bytearray:
        """The id's UTF-8 bytes: sorts like the id."""
        start = ptr >> _AT
        return self.arena[start : start + (ptr >> _META_BITS & _ID_MASK)]

    def id(self, ptr: int) -> str:
        return self.key(ptr).decode()

    def metadata_json(self, ptr: int) -> bytes:
        end = (ptr >> _AT) + _id_len(ptr)
        size = ptr & _LONG
        if size == _LONG:
            size = int.from_bytes(self.arena[end : end + _LEN], "little")
            end += _LEN
        return bytes(self.arena[end : end + size])

    def size(self, ptr: int) -> int:
        """The record's bytes in the arena."""
        meta = ptr & _LONG
        if meta == _LONG:
            meta = _LEN + len(self.metadata_json(ptr))
        return _id_len(ptr) + meta

    def metadata(self, ptr: int) -> dict[str, Any]:
        size = ptr & _LONG
        if size == 2:  # b"{}": no metadata, the usual case
            return {}
        if size == _LONG:
            return parse_metadata(self.metadata_json(ptr))
        end = (ptr >> _AT) + (ptr >> _META_BITS & _ID_MASK)
        return parse_metadata(bytes(self.arena[end : end + size]))


@lru_cache(maxsize=4096)
def parse_metadata(raw: bytes) -> dict[str, Any]:
    """Metadata JSON as a dict. Cached: most collections repeat a few metadata values, and the
    dicts are only read (hits share them, as they shared the one dict per item before)."""
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def meta_bytes(metadata: dict[str, Any]) -> bytes:
    return metadata_json(metadata).encode()


class ItemTable:
    """Writers are serialised by the caller (``CollectionState.write_lock``); readers need no
    lock."""

    def __init__(self) -> None:
        self._parts = (NumArray(np.int64, fill=-1), bytearray())
        self._dead = 0  # arena bytes of records no number points at
        self.count = 0

    # readers ------------------------------------------------------------------------------
    def locate(self, nums: np.ndarray) -> tuple[np.ndarray, Records]:
        """Each number's pointer (-1: no such item) and the arena the pointers are valid in."""
        where, arena = self._parts
        return where.take(nums), Records(arena)

    def get(self, num: int) -> tuple[int, Records] | None:
        ptrs, records = self.locate(np.asarray([num], np.int64))
        return None if ptrs[0] < 0 else (int(ptrs[0]), records)

    def nums(self) -> np.ndarray:
        """Every item's number, ascending."""
        first, ptr = self._parts[0].rows()
        return np.flatnonzero(ptr >= 0).astype(np.int64) + first

    # writers ------------------------------------------------------------------------------
    def put(self, nums: Sequence[int], ids: Sequence[str], metas: Sequence[bytes]) -> None:
        """Insert or overwrite; a number twice in the batch takes the last."""
        last = {num: i for i, num in enumerate(nums)}  # the batch's, not per item
        order = list(last.values())
        new = np.fromiter(last, np.int64, len(last))
        where, arena = self._parts
        first, ptr = where.ensure(new)
        rows = new - first
        old = ptr[rows]
        self._dead += self._sizes(Records(arena), old[old >= 0])
        self.count += int((old < 0).sum())
        keys = [ids[i].encode() for i in order]
        metas = [metas[i] for i in order]
        key_len = np.fromiter(map(len, keys), np.int64, len(keys))
        if len(keys) and key_len.max() >> _ID_BITS:
            raise ValueError(f"an item id is longer than {(1 << _ID_BITS) - 1} bytes")
        meta_len = np.fromiter(map(len, metas), np.int64, len(metas))
        stored = [m if len(m) < _LONG else len(m).to_bytes(_LEN, "little") + m for m in metas]
        sizes = key_len + np.fromiter(map(len, stored), np.int64, len(stored))
        key_at = len(arena) + np.cumsum(sizes) - sizes
        out = key_at << _AT | key_len << _META_BITS | np.minimum(meta_len, _LONG)
        parts: list[bytes] = [b""] * (2 * len(keys))
        parts[0::2], parts[1::2] = keys, stored
        arena += b"".join(parts)
        ptr[rows] = out  # after the records: a reader never meets a pointer past the arena
        self._maybe_compact()

    def drop(self, nums: Sequence[int]) -> None:
        """Forget items; numbers it does not hold are ignored."""
        where, arena = self._parts
        arr, rows, _ = where.slots(np.unique(np.asarray(nums, np.int64)))
        old = arr[rows]
        rows = rows[old >= 0]
        self._dead += self._sizes(Records(arena), old[old >= 0])
        self.count -= len(rows)
        arr[rows] = -1
        self._maybe_compact()

    def trim(self) -> None:
        """Give back the slack of growth (after a bulk load): two copies, no per-item work."""
        where, arena = self._parts
        self._parts = (where.trimmed(where.rows()[1] >= 0), bytearray(arena))

    def nbytes(self) -> int:
        where, arena = self._parts
        return where.rows()[1].nbytes + len(arena)

    @staticmethod
    def _sizes(records: Records, ptrs: np.ndarray) -> int:
        return sum(records.size(p) for p in ptrs.tolist())

    def _maybe_compact(self) -> None:
        where, arena = self._parts
        if self._dead <= max(len(arena) // 2, 1 << 16):
            return
        records = Records(arena)
        first, ptr = where.rows()
        live = np.flatnonzero(ptr >= 0)
        fresh = NumArray(np.int64, fill=-1)
        fresh.ensure(live + first)
        new_first, new_ptr = fresh.rows()
        out = bytearray()
        for row in live.tolist():
            old = int(ptr[row])
            new_ptr[row + first - new_first] = len(out) << _AT | old & (1 << _AT) - 1
            meta = records.metadata_json(old)
            out += records.key(old)
            out += len(meta).to_bytes(_LEN, "little") + meta if len(meta) >= _LONG else meta
        self._parts = (fresh, out)  # one assignment: readers hold either pair whole
        self._dead = 0


def _id_len(ptr: int) -> int:
    return ptr >> _META_BITS & _ID_MASK
