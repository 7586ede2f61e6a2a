"""One-file persistence for ``HammingIndex``: versioned header, raw arrays, CRC, atomic write.

File layout (little-endian)::

    8 bytes   magic b"BSKHAMM\\x00"
    4 bytes   format version (uint32)
    4 bytes   header length H (uint32)
    4 bytes   CRC-32 of the header (uint32)
    H bytes   UTF-8 JSON header: bits, groups, pieces, config, CRC-32 of the payload, and for
              every array its name, dtype, shape and offset from the payload start
    padding   to a multiple of 64
    payload   the arrays, each starting on a 64-byte boundary

The built tables are stored as they are, so loading is a read and a checksum, not a rebuild.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from service.index.errors import CodeWidthError, IndexFormatError
from service.index.layout import Piece, Tables, check_bits, n_words, split_pieces

if TYPE_CHECKING:
    from service.index.hamming import HammingIndex

MAGIC = b"BSKHAMM\x00"
VERSION = 1
_ALIGN = 64
_PREFIX = struct.Struct("<8sIII")


def _raw(arr: np.ndarray) -> memoryview:
    return arr.reshape(-1).view(np.uint8).data  # flat bytes; works for empty arrays too


def _pad(n: int) -> int:
    return -n % _ALIGN


def save_index(index: HammingIndex, path: Path) -> None:
    snap = index._snap
    base = snap.base
    arrays: dict[str, np.ndarray] = {
        "codes": base.codes,
        "rows": base.rows,
        "ids": base.ids,
        "dirs": base.dirs,
        "tpbits": base.tpbits,
        "alive": snap.alive.view(np.uint8),
        "dcodes": snap.dcodes,
        "dids": snap.dids,
    }
    layout: list[dict[str, Any]] = []
    offset = 0
    crc = 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        arrays[name] = arr
        layout.append({"name": name, "dtype": arr.dtype.str, "shape": arr.shape, "offset": offset})
        offset += arr.nbytes + _pad(arr.nbytes)
    cfg = asdict(index.config)
    header = {
        "bits": index.bits,
        "groups": list(index.groups),
        "pieces": [[p.word, p.shift, p.length] for p in base.pieces],
        "config": cfg,
        "n_dead": snap.n_dead,
        "arrays": layout,
        "payload_bytes": offset,
    }
    for arr in arrays.values():
        crc = zlib.crc32(_raw(arr), crc)
        crc = zlib.crc32(bytes(_pad(arr.nbytes)), crc)
    header["crc32"] = crc
    blob = json.dumps(header).encode()
    head = _PREFIX.pack(MAGIC, VERSION, len(blob), zlib.crc32(blob)) + blob
    head += bytes(_pad(len(head)))

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            for arr in arrays.values():
                f.write(_raw(arr))
                f.write(bytes(_pad(arr.nbytes)))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def load_index(path: Path, bits: int | None) -> HammingIndex:
    from service.index.hamming import CostModel, HammingIndex, IndexConfig, _Snapshot

    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            buf = bytearray(size)
            got = f.readinto(buf)
    except FileNotFoundError:
        raise IndexFormatError(f"{path}: no such index file") from None
    except IsADirectoryError:
        raise IndexFormatError(f"{path}: is a directory, expected an index file") from None
    if got != size or size < _PREFIX.size:
        raise IndexFormatError(f"{path}: truncated ({size} bytes), not a Bitseek index")
    magic, version, hlen, hcrc = _PREFIX.unpack_from(buf)
    if magic != MAGIC:
        raise IndexFormatError(f"{path}: bad magic {magic!r}, not a Bitseek Hamming index")
    if version != VERSION:
        raise IndexFormatError(
            f"{path}: index format version {version}, this code reads version {VERSION}"
        )
    start = _PREFIX.size + hlen
    if start > size:
        raise IndexFormatError(f"{path}: truncated header ({size} bytes, header needs {start})")
    blob = bytes(buf[_PREFIX.size : start])
    if zlib.crc32(blob) != hcrc:
        raise IndexFormatError(f"{path}: header checksum mismatch, the file is corrupt")
    try:
        header = json.loads(blob)
        saved_bits = int(header["bits"])
        payload_at = start + _pad(start)
        payload_bytes = int(header["payload_bytes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexFormatError(f"{path}: unreadable header ({exc})") from None
    if bits is not None and int(bits) != saved_bits:
        raise CodeWidthError(f"{path}: index holds {saved_bits}-bit codes, expected {bits}-bit")
    if size < payload_at + payload_bytes:
        raise IndexFormatError(
            f"{path}: truncated: {size} bytes, header promises {payload_at + payload_bytes}"
        )
    if size > payload_at + payload_bytes:
        raise IndexFormatError(f"{path}: {size - payload_at - payload_bytes} unexpected bytes")
    payload = memoryview(buf)[payload_at:]
    if zlib.crc32(payload) != header.get("crc32"):
        raise IndexFormatError(f"{path}: checksum mismatch, the file is corrupt")
    try:
        check_bits(saved_bits)
        cfg = dict(header["config"])
        cfg["cost"] = CostModel(**cfg["cost"])
        cfg["groups"] = tuple(cfg["groups"]) if cfg["groups"] is not None else None
        config = IndexConfig(**cfg)
        groups = tuple(int(m) for m in header["groups"])
        pieces = tuple(p for m in groups for p in split_pieces(saved_bits, m))
        if [[p.word, p.shift, p.length] for p in pieces] != header["pieces"]:
            raise IndexFormatError(f"{path}: table layout differs from this version's")
        arrays = {
            a["name"]: np.frombuffer(
                payload, np.dtype(a["dtype"]), int(np.prod(a["shape"])), int(a["offset"])
            ).reshape(a["shape"])
            for a in header["arrays"]
        }
        n_dead = int(header["n_dead"])
    except IndexFormatError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise IndexFormatError(f"{path}: inconsistent header ({exc})") from None
    base = _tables(path, saved_bits, groups, pieces, arrays)
    alive = arrays["alive"].view(bool)
    dcodes, dids = arrays["dcodes"], arrays["dids"]
    if alive.shape != (base.n,) or int(base.n - alive.sum()) != n_dead:
        raise IndexFormatError(f"{path}: tombstones do not match the tables")
    if dcodes.shape != (dids.shape[0], n_words(saved_bits)) or dids.ndim != 1:
        raise IndexFormatError(f"{path}: delta buffer has inconsistent shapes")
    index = HammingIndex(saved_bits, config)
    index._snap = _Snapshot(base, alive, n_dead, dcodes, dids)
    return index


def _tables(
    path: Path,
    bits: int,
    groups: tuple[int, ...],
    pieces: tuple[Piece, ...],
    arrays: dict[str, np.ndarray],
) -> Tables:
    codes, rows, ids, dirs, tpbits = (arrays[k] for k in ("codes", "rows", "ids", "dirs", "tpbits"))
    t, w = len(pieces), n_words(bits)
    n = codes.shape[1] if codes.ndim == 3 else -1
    expected = {
        "codes": (codes, np.uint64, (t, n, w)),
        "rows": (rows, np.uint32, (t - 1, n)),
        "ids": (ids, np.int64, (n,)),
        "tpbits": (tpbits, np.int64, (t,)),
    }
    for name, (arr, dtype, shape) in expected.items():
        if arr.dtype != dtype or arr.shape != shape:
            raise IndexFormatError(
                f"{path}: array {name} is {arr.dtype}{arr.shape}, expected {np.dtype(dtype)}{shape}"
            )
    if np.any(tpbits < 1) or np.any(tpbits > np.array([p.length for p in pieces])):
        raise IndexFormatError(f"{path}: directory prefix widths are out of range")
    sizes = (1 << tpbits) + 1
    if dirs.dtype != np.uint32 or dirs.shape != (int(sizes.sum()),):
        raise IndexFormatError(f"{path}: directory array has the wrong size")
    tables = Tables(bits, groups, codes, rows, ids, dirs, tpbits)
    if np.any(dirs[tables.dstart + sizes - 1] != n) or (n and rows.size and int(rows.max()) >= n):
        raise IndexFormatError(f"{path}: directories or row map point outside the tables")
    return tables
