"""Codes on the wire: lowercase hex of the packed bytes (numpy.packbits order, as the CLI)."""

from __future__ import annotations

import binascii

import numpy as np

from service.errors import InvalidInput


def to_hex(codes: np.ndarray) -> list[str]:
    """uint8 (n, bits // 8) -> n hex strings."""
    packed = np.ascontiguousarray(codes, dtype=np.uint8)
    if packed.ndim != 2:
        raise ValueError(f"codes must be (n, bytes), got shape {packed.shape}")
    digits = packed.tobytes().hex()  # one pass for the batch, then cut per code
    width = 2 * packed.shape[1]
    return [digits[at * width : (at + 1) * width] for at in range(packed.shape[0])]


def from_hex(value: str, bits: int, field: str = "code") -> np.ndarray:
    """One hex string -> uint8 (1, bits // 8); the width must match the collection's model."""
    return np.frombuffer(hex_bytes(value, bits, field), dtype=np.uint8).reshape(1, -1)


def hex_bytes(value: str, bits: int, field: str = "code") -> bytes:
    """One hex string -> its bits // 8 packed bytes (a bulk import's codes: no array each)."""
    want = bits // 4
    text = value.strip().lower()
    if text.startswith("0x"):
        text = text[2:]
    if len(text) != want:
        raise InvalidInput(
            f"code has {len(text)} hex digits ({len(text) * 4} bits); this collection's model"
            f" uses {bits} bits, so {want} hex digits",
            field,
        )
    try:
        return binascii.unhexlify(text)
    except (binascii.Error, ValueError):
        raise InvalidInput("code is not hexadecimal", field) from None
