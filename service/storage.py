"""The one place that picks the storage backend (``BITSEEK_BACKEND``) and opens it.

``local``: ``SqliteStore`` in the data directory plus an in-process ``HammingIndex`` per serving
version (the default, and the fastest on one machine). ``milvus``: ``MilvusStore`` and a
``MilvusIndex`` per serving version on ``BITSEEK_MILVUS_URI`` (a ``*.db`` path opens Milvus Lite
in this process), with image payloads and model versions in the data directory. Everything above
sees the ``ItemStore`` / ``CodeIndex`` protocols only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from service.config import Settings
from service.registry import IndexFactory, Registry, default_index_factory
from service.store import ItemStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Storage:
    store: ItemStore
    index_factory: IndexFactory


def open_storage(settings: Settings) -> Storage:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.backend == "milvus":
        from service.milvus_client import connect, is_lite, lite_clients
        from service.milvus_index import MilvusIndex, drop_leftovers
        from service.milvus_store import MilvusStore

        uri = settings.milvus_uri_or_default
        timeout = settings.milvus_timeout_s
        client = connect(uri, settings.milvus_token, timeout)
        store = MilvusStore(uri, settings.data_dir, settings.milvus_token, timeout, client)
        # the file's first client in its only process: every index in it was left by a stopped one
        if is_lite(uri) and lite_clients(uri) == 1:
            dropped = drop_leftovers(client, timeout)
            if dropped:
                log.info("dropped %d index collection(s) left by a stopped server", dropped)
        return Storage(store, partial(MilvusIndex, client, timeout=timeout))
    from service.sqlite_store import SqliteStore

    path = settings.data_dir / "bitseek.sqlite3"
    return Storage(SqliteStore(path, settings.sqlite_synchronous), default_index_factory)


def open_offline_registry(settings: Settings) -> Registry:
    """The configured store and indexes behind a registry for work on the data directory
    without a server (``bitseek import``, the demo build): models run in this process, and a
    server on the same store follows the writes. The caller closes ``registry.store``."""
    from service.backend import TrainingBackend
    from training.device import resolve_device

    storage = open_storage(settings)
    registry = Registry(
        storage.store,
        TrainingBackend(),
        settings.data_dir,
        resolve_device(settings.device),
        settings.input_limits,
        storage.index_factory,
    )
    try:
        registry.load()
    except BaseException:
        storage.store.close()
        raise
    return registry
