"""The error a model raises for one item of a batch it cannot take.

A ValueError, so callers that catch ValueError still do; ``index`` lets the service name the item
(``items[3].vector``) instead of the whole batch. Kept apart from ``training.features`` so the
service can import it without scikit-learn.
"""

from __future__ import annotations


class ItemRejected(ValueError):
    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"item {index}: {reason}")
        self.index = index
