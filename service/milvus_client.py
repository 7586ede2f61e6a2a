"""What the Milvus backend knows about Milvus: the connection, limits, and the rules it works by.

Measured with pymilvus 2.5 and Milvus Lite 2.5 (issue 17), and designed around here:
- a search or query returns at most ``MAX_LIMIT`` rows (16,384), so larger answers are paged by
  distance shell (``milvus_index``) or by primary-key window (``milvus_store``);
- the default consistency level is Bounded: every read here asks for Strong, so it sees the
  writes that returned before it;
- an over-long VARCHAR is not refused, and an unsupported filter expression is retried until
  the call's timeout: values are checked before they are sent (``check_varchar``), filters are
  built only from integers and collection names (item ids are looked up by a 64-bit hash of
  the id, never quoted into an expression), and every call carries a timeout;
- Milvus Lite 3.x has no binary vectors: the ``milvus`` extra pins ``milvus-lite<3``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_LIMIT = 16_384  # the most rows one search or query may return
MAX_VARCHAR = 65_535  # bytes in a VARCHAR field
STRONG = "Strong"


class MilvusLimit(ValueError):
    """A value Milvus would store wrongly (or refuse after a long retry): refused before sending."""


_lite_users: Counter[str] = Counter()  # open clients per Milvus Lite file in this process
_lite_lock = threading.Lock()


def connect(uri: str, token: str | None, timeout: float) -> Any:
    """A ``MilvusClient``: a local ``*.db`` path opens Milvus Lite (one process per file), an
    ``http(s)://`` URI a standalone server, a cluster or Zilliz Cloud. Pair with ``disconnect``."""
    with warnings.catch_warnings():
        # milvus_lite 2.5 imports pkg_resources, which warns on import
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        from pymilvus import MilvusClient

        with _lite_lock:
            client = MilvusClient(uri=uri, token=token or "", timeout=timeout)
            if is_lite(uri):
                _lite_users[_lite_key(uri)] += 1
        return client


def disconnect(client: Any, uri: str) -> None:
    """Close ``client``; the last client of a Milvus Lite file also stops its server process
    (pymilvus keeps it running until the interpreter exits otherwise)."""
    client.close()
    if not is_lite(uri):
        return
    with _lite_lock:
        key = _lite_key(uri)
        _lite_users[key] -= 1
        if _lite_users[key] <= 0:
            del _lite_users[key]
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(key)


def lite_clients(uri: str) -> int:
    """How many clients of this process have the Milvus Lite file ``uri`` open now."""
    with _lite_lock:
        return _lite_users[_lite_key(uri)]


def _lite_key(uri: str) -> str:
    return str(Path(uri).absolute().resolve())


def is_lite(uri: str) -> bool:
    return not uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))


def check_varchar(value: str, field: str, limit: int = MAX_VARCHAR) -> str:
    size = len(value.encode("utf-8"))
    if size > limit:
        raise MilvusLimit(f"{field} is {size} bytes; the Milvus backend stores at most {limit}")
    return value


def id_key(item_id: str) -> int:
    """A signed 64-bit hash of an item id: how rows are found by id without quoting the id into
    a filter expression (Milvus Lite's parser mangles non-ASCII and NUL escapes)."""
    digest = hashlib.blake2b(item_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def int_list(values: list[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in values) + "]"


def add_dummy_vector(schema: Any, index_params: Any) -> None:
    """Every Milvus collection needs a vector field; tables of plain rows get a one-byte one."""
    from pymilvus import DataType

    schema.add_field("v", DataType.BINARY_VECTOR, dim=8)
    index_params.add_index("v", index_type="BIN_FLAT", metric_type="HAMMING")


DUMMY = b"\x00"
