"""Fixtures of tests/service: the storage backends (see backends.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.store import ItemStore
from tests.service.backends import BACKENDS, open_store


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[ItemStore]:
    opened = open_store(backend, tmp_path)
    try:
        yield opened
    finally:
        opened.close()
