"""A numpy array addressed by item number: one row per number between the lowest and highest
seen, grown geometrically at either end.

The store numbers items from one sequence shared by every collection, so one collection's
numbers are dense when it was written in bulk and sparse when collections were written in
turns; a row per number costs a few bytes even when unused, which is less than any hash table's
entry. Writers (serialised by the caller) grow the array by building a new one and publishing
it with one assignment; readers take ``rows()`` once and see the array as of that moment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_FIRST = 1024  # rows of the first allocation


class NumArray:
    def __init__(self, dtype: Any, width: int = 0, fill: int = 0) -> None:
        """``width`` 0: one value per number, else rows of ``width`` values."""
        self._shape: tuple[int, ...] = (width,) if width else ()
        self._dtype = np.dtype(dtype)
        self._fill = fill
        self._rows = (0, np.full((0, *self._shape), fill, self._dtype))  # (first number, array)

    def rows(self) -> tuple[int, np.ndarray]:
        """(number of row 0, the array): read both at once, since growth replaces both."""
        return self._rows

    def slots(self, nums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(array, rows of ``nums`` that it covers, which of ``nums`` those are)."""
        first, arr = self._rows
        at = nums - first
        inside = (at >= 0) & (at < len(arr))
        return arr, at[inside], inside

    def ensure(self, nums: np.ndarray) -> tuple[int, np.ndarray]:
        """Grow to cover ``nums`` (writers only); returns ``rows()`` after."""
        first, arr = self._rows
        if len(nums) == 0:
            return first, arr
        lo, hi = int(nums.min()), int(nums.max())
        if len(arr) and first <= lo and hi < first + len(arr):
            return first, arr
        if not len(arr):
            first = lo
        new_lo, new_hi = min(first, lo), max(first + len(arr), hi + 1)
        grow = max(_FIRST, len(arr) // 4)  # geometric: amortised O(1) per number
        if lo < first:
            new_lo = min(lo, max(0, first - grow))  # numbers start at 1: no rows below 0
        if hi >= first + len(arr):
            new_hi = max(new_hi, first + len(arr) + grow)
        out = np.full((new_hi - new_lo, *self._shape), self._fill, self._dtype)
        if len(arr):
            out[first - new_lo : first - new_lo + len(arr)] = arr
        self._rows = (new_lo, out)
        return self._rows

    def trimmed(self, used: np.ndarray) -> NumArray:
        """A copy holding only the rows from the first to the last ``used`` one."""
        first, arr = self._rows
        rows = np.flatnonzero(used)
        out = NumArray(self._dtype, self._shape[0] if self._shape else 0, self._fill)
        if len(rows):
            out._rows = (first + int(rows[0]), arr[rows[0] : rows[-1] + 1].copy())
        return out
