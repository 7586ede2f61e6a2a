"""Metadata filters: a bitmap of item numbers per (top-level key, value), as payload indexes do.

A search's ``where`` is exact JSON equality on top-level keys (``matches``); intersecting the
bitmaps of its (key, value) pairs gives exactly the items that pass, without reading any item.
Values are keyed by JSON type as well as value, since Python's ``True == 1``: null is a value of
its own, true is not 1, and 1 is 1.0 (JSON has one number type). Lists and objects (the API
refuses them, code may store them) are keyed by their canonical JSON.

A key whose values are mostly distinct (titles, timestamps) would cost a bitmap object per item,
so past ``FilterConfig.max_values`` distinct values its bitmaps are dropped and a filter on it is
tested on each candidate's stored metadata instead, as before this index existed; the key stays
unindexed until the collection is next loaded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from pyroaring import BitMap

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FilterConfig:
    max_values: int = 10_000  # distinct values of one key past which it is left unindexed

    def __post_init__(self) -> None:
        if self.max_values < 1:
            raise ValueError(f"max_values must be at least 1, got {self.max_values}")


def matches(meta: dict[str, Any], key: str, wanted: Any) -> bool:
    """JSON equality: the key must be there (null is a value, not absence), and true is not 1
    (Python's bool is an int, so == alone would say it is)."""
    if key not in meta:
        return False
    have = meta[key]
    return isinstance(have, bool) == isinstance(wanted, bool) and have == wanted


def value_key(value: Any) -> Hashable:
    """Equal keys exactly when ``matches`` says the values are equal."""
    if value is None or isinstance(value, bool | str):
        return type(value).__name__, value
    if isinstance(value, int | float):
        return "number", value  # 1 == 1.0 and they hash alike
    return "json", json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class Selection:
    """What a ``where`` leaves: ``members`` pass every indexed condition (None: there was none);
    ``rest`` are the conditions on unindexed keys, to test on each item's metadata."""

    members: BitMap | None
    rest: list[tuple[str, Any]]


@dataclass
class FilterIndex:
    """Writers are serialised by the caller; readers take no lock (each bitmap operation runs
    whole under the GIL, and ``select`` copies what it returns)."""

    config: FilterConfig = field(default_factory=FilterConfig)
    _maps: dict[str, dict[Hashable, BitMap]] = field(default_factory=dict)
    _unindexed: set[str] = field(default_factory=set)

    def add(self, nums: list[int], meta: dict[str, Any]) -> None:
        """Index items that share one metadata value (callers group them: far fewer bitmap
        calls when a collection repeats its metadata)."""
        for key, value in meta.items():
            if key in self._unindexed:
                continue
            values = self._maps.setdefault(key, {})
            vkey = value_key(value)
            bitmap = values.get(vkey)
            if bitmap is None:
                if len(values) >= self.config.max_values:
                    self._drop_key(key)
                    continue
                bitmap = values[vkey] = BitMap()
            bitmap.update(nums)

    def remove(self, nums: list[int], meta: dict[str, Any]) -> None:
        for key, value in meta.items():
            values = self._maps.get(key)
            if values is None:
                continue
            vkey = value_key(value)
            bitmap = values.get(vkey)
            if bitmap is not None:
                bitmap.difference_update(BitMap(nums))
                if not bitmap:
                    del values[vkey]

    def select(self, where: dict[str, Any]) -> Selection:
        members: BitMap | None = None
        rest = []
        for key, value in where.items():
            if key in self._unindexed:
                rest.append((key, value))
                continue
            bitmap = self._maps.get(key, {}).get(value_key(value))
            if bitmap is None:
                return Selection(BitMap(), [])  # no item has that value
            # & makes a new bitmap: later writes to the index's own do not reach the caller's
            members = bitmap & bitmap if members is None else members & bitmap
        return Selection(members, rest)

    def _drop_key(self, key: str) -> None:
        log.warning(
            "metadata key %r has more than %d distinct values: filters on it test each"
            " candidate instead of a bitmap",
            key,
            self.config.max_values,
        )
        self._unindexed.add(key)
        self._maps.pop(key, None)
