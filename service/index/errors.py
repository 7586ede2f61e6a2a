"""Errors raised by the index; all subclass ``ValueError`` so callers may catch either.

Hierarchy::

    HammingIndexError(ValueError)   any misuse of a HammingIndex
    ├── CodeWidthError              codes or a saved index of the wrong width / dtype / shape
    └── IndexFormatError            a saved index file that is missing, corrupt or truncated
"""

from __future__ import annotations


class HammingIndexError(ValueError):
    """Base class of the index's errors."""


class CodeWidthError(HammingIndexError):
    """Codes (or a loaded index) do not match the index's code width, dtype or shape."""


class IndexFormatError(HammingIndexError):
    """A saved index cannot be read: bad magic, unknown version, truncated or corrupt."""
