"""service/storage.py on Milvus Lite: which index collections a newly opened store drops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_settings


def test_only_the_first_client_of_a_lite_file_drops_the_indexes_left_in_it(
    tmp_path: Path,
) -> None:
    pytest.importorskip("pymilvus")
    from service.milvus_index import PREFIX
    from service.storage import open_storage

    settings = make_settings(tmp_path, backend="milvus")
    first = open_storage(settings)
    index = first.index_factory(16)
    index.add(np.arange(3), np.zeros((3, 2), np.uint8))
    # a second store in the same process (a second Registry, `bitseek import` in tests): the
    # first one's index is live, not a leftover
    second = open_storage(settings)
    assert sorted(index.search_radius(np.zeros((1, 2), np.uint8), 0)[0].ids.tolist()) == [0, 1, 2]
    second.store.close()
    first.store.close()  # its index collection stays in the file, as after a killed server
    third = open_storage(settings)
    try:
        client = getattr(third.store, "client")  # noqa: B009 - only MilvusStore has one
        assert not [n for n in client.list_collections() if n.startswith(PREFIX)]
    finally:
        third.store.close()
