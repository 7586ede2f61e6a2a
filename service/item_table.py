"""A collection's items in memory: number -> (user id, metadata JSON), with no Python object
per item.

Records sit in one bytearray arena, ``[u32 metadata length][id UTF-8][metadata JSON]``, appended
and never changed in place; a ``NumArray`` of int64 points each number at its record as
``offset of the id << 16 | id length`` (-1: no item). An overwrite appends a new record and
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
from typing import Any

import numpy as np

from service.num_array import NumArray

_ID_BITS = 16  # the id length's share of a pointer; ids are at most 256 characters
_LEN = 4  # bytes of the metadata length before each id


@dataclass(frozen=True)
class Records:
    """The arena a set of pointers was read with: decodes the records they point at."""

    arena: bytearray

    def key(self, ptr: int) -> bytes:
        """The id's UTF-8 bytes: sorts like the id."""
        start = ptr >> _ID_BITS
        return bytes(self.arena[start : start + (ptr & 0xFFFF)])

    def id(self, ptr: int) -> str:
        return self.key(ptr).decode()

    def metadata_json(self, ptr: int) -> bytes:
        start = ptr >> _ID_BITS
        end = start + (ptr & 0xFFFF)
        size = int.from_bytes(self.arena[start - _LEN : start], "little")
        return bytes(self.arena[end : end + size])

    def metadata(self, ptr: int) -> dict[str, Any]:
        raw = self.metadata_json(ptr)
        if raw == b"{}":
            return {}
        value = json.loads(raw)
        return value if isinstance(value, dict) else {}


def meta_bytes(metadata: dict[str, Any]) -> bytes:
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()


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
        arr, rows, inside = where.slots(nums)
        ptrs = np.full(len(nums), -1, np.int64)
        ptrs[inside] = arr[rows]
        return ptrs, Records(arena)

    def get(self, num: int) -> tuple[int, Records] | None:
        ptrs, records = self.locate(np.asarray([num], np.int64))
        return None if ptrs[0] < 0 else (int(ptrs[0]), records)

    def nums(self) -> np.ndarray:
        """Every item's number, ascending."""
        first, ptr = self._parts[0].rows()
        return np.flatnonzero(ptr >= 0).astype(np.int64) + first

    # writers ------------------------------------------------------------------------------
    def put(self, nums: Sequence[int], ids: Sequence[str], metas: Sequence[bytes]) -> None:
        """Insert or overwrite; the last of a number in the batch wins."""
        where, arena = self._parts
        first, ptr = where.ensure(np.asarray(nums, np.int64))
        records = Records(arena)
        for num, item_id, meta in zip(nums, ids, metas, strict=True):
            key = item_id.encode()
            if len(key) >> _ID_BITS:
                raise ValueError(f"item id of {len(key)} bytes: at most {0xFFFF}")
            old = int(ptr[num - first])
            if old >= 0:
                self._dead += self._size(records, old)
            else:
                self.count += 1
            arena += len(meta).to_bytes(_LEN, "little")
            start = len(arena)
            arena += key
            arena += meta
            ptr[num - first] = start << _ID_BITS | len(key)
        self._maybe_compact()

    def drop(self, num: int) -> bool:
        """Forget an item; False when there was none."""
        where, arena = self._parts
        first, ptr = where.rows()
        at = num - first
        if not 0 <= at < len(ptr) or ptr[at] < 0:
            return False
        self._dead += self._size(Records(arena), int(ptr[at]))
        ptr[at] = -1
        self.count -= 1
        self._maybe_compact()
        return True

    def clear(self) -> None:
        self._parts = (NumArray(np.int64, fill=-1), bytearray())
        self._dead = 0
        self.count = 0

    def nbytes(self) -> int:
        where, arena = self._parts
        return where.rows()[1].nbytes + len(arena)

    @staticmethod
    def _size(records: Records, ptr: int) -> int:
        return _LEN + (ptr & 0xFFFF) + len(records.metadata_json(ptr))

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
            meta = records.metadata_json(old)
            out += len(meta).to_bytes(_LEN, "little")
            start = len(out)
            out += records.key(old)
            out += meta
            new_ptr[row + first - new_first] = start << _ID_BITS | (old & 0xFFFF)
        self._parts = (fresh, out)  # one assignment: readers hold either pair whole
        self._dead = 0
