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
    """Row ``n - first`` holds number ``n``; the first and last rows hold no number and keep the
    fill value, so a lookup clipped to the array answers the fill for any number outside it."""

    def __init__(self, dtype: Any, width: int = 0, fill: int = 0) -> None:
        """``width`` 0: one value per number, else rows of ``width`` values."""
        self._shape: tuple[int, ...] = (width,) if width else ()
        self._dtype = np.dtype(dtype)
        self._fill = fill
        self._rows = (0, self._empty(2))  # (number of row 0, array)

    def rows(self) -> tuple[int, np.ndarray]:
        """(number of row 0, the array): read both at once, since growth replaces both."""
        return self._rows

    def take(self, nums: np.ndarray) -> np.ndarray:
        """Each number's value (a new array); the fill for numbers it does not cover."""
        first, arr = self._rows
        return arr.take(nums - first, axis=0, mode="clip")

    def slots(self, nums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(array, rows of ``nums`` that it covers, which of ``nums`` those are)."""
        first, arr = self._rows
        at = nums - first
        inside = (at > 0) & (at < len(arr) - 1)
        return arr, at[inside], inside

    def ensure(self, nums: np.ndarray) -> tuple[int, np.ndarray]:
        """Grow to cover ``nums`` (writers only); returns ``rows()`` after."""
        first, arr = self._rows
        if len(nums) == 0:
            return first, arr
        lo, hi = int(nums.min()), int(nums.max())
        last = first + len(arr) - 2  # the last number covered
        if first < lo and hi <= last:
            return first, arr
        if len(arr) == 2:  # nothing stored yet: cover exactly what is asked
            new_first, new_last = lo - 1, hi
        else:
            grow = max(_FIRST, len(arr) // 4)  # geometric: amortised O(1) per number
            new_first = min(lo - 1, max(0, first - grow)) if lo <= first else first
            new_last = max(hi, last + grow) if hi > last else last
        out = self._empty(new_last - new_first + 2)
        if len(arr) > 2:
            out[first - new_first : first - new_first + len(arr)] = arr
        self._rows = (new_first, out)
        return self._rows

    def trimmed(self, used: np.ndarray) -> NumArray:
        """A copy holding only the rows from the first to the last ``used`` one."""
        first, arr = self._rows
        rows = np.flatnonzero(used)
        out = NumArray(self._dtype, self._shape[0] if self._shape else 0, self._fill)
        if len(rows):
            out._rows = (first + int(rows[0]) - 1, arr[rows[0] - 1 : rows[-1] + 2].copy())
        return out

    def _empty(self, n: int) -> np.ndarray:
        return np.full((n, *self._shape), self._fill, self._dtype)
