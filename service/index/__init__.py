"""Exact Hamming-distance search over packed binary codes.

``HammingIndex(bits)`` with ``add``/``remove``/``search_radius``/``search_knn``/``save``/``load``;
see ``service.index.hamming`` for the design and the concurrency guarantee.
"""

from service.index.errors import CodeWidthError, HammingIndexError, IndexFormatError
from service.index.hamming import CostModel, HammingIndex, IndexConfig
from service.index.result import Hits, SearchResult, SearchStats

__all__ = [
    "CodeWidthError",
    "CostModel",
    "HammingIndex",
    "HammingIndexError",
    "Hits",
    "IndexConfig",
    "IndexFormatError",
    "SearchResult",
    "SearchStats",
]
