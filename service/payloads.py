"""Decoding JSON payloads into what the models eat (``service.modalities`` picks which).

A text is a non-empty string; an image is base64 PNG/JPEG, converted and resized to the
collection's image shape (16-bit grey scaled to 8 bits, transparency over white unless the
collection keeps 4 channels); a vector is a list of finite floats of the collection's dimension.
Every failure raises ``InvalidInput`` naming the field, before anything is stored.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from PIL import Image

from service.errors import InvalidInput


def decode_text(value: str, field: str, max_chars: int) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates from JSON escapes cannot be stored
        raise InvalidInput(
            f"text is not valid Unicode: lone surrogate at character {exc.start}", field
        ) from None
    if not value.strip():
        raise InvalidInput("text is empty (or only whitespace)", field)
    if len(value) > max_chars:
        raise InvalidInput(f"text has {len(value)} characters; the limit is {max_chars}", field)
    return value


def decode_image_bytes(
    raw: bytes, field: str, shape: tuple[int, ...], max_pixels: int
) -> np.ndarray:
    """PNG/JPEG bytes -> uint8 array of ``shape`` ((H, W) grey or (H, W, C))."""
    mode = "L" if len(shape) == 2 else {1: "L", 3: "RGB", 4: "RGBA"}.get(shape[2], "RGB")
    with _pillow(field):
        img = Image.open(io.BytesIO(raw))
    with img:
        if img.width * img.height > max_pixels:
            raise InvalidInput(
                f"image is {img.width}x{img.height}; the limit is {max_pixels} pixels", field
            )
        if img.format not in ("PNG", "JPEG"):
            raise InvalidInput(f"image must be PNG or JPEG, got {img.format}", field)
        with _pillow(field):
            img.load()  # decode now: a broken file fails here, not in convert()
        converted = _flatten_alpha(_to_8_bit(img), keep_alpha=mode == "RGBA").convert(mode)
    if converted.size != (shape[1], shape[0]):
        converted = converted.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
    return np.asarray(converted, dtype=np.uint8).reshape(shape)


@contextmanager
def _pillow(field: str) -> Iterator[None]:
    """Around Pillow's open and load only: its decoders report a broken file with many exception
    types (OSError, SyntaxError from the PNG chunk reader, EOFError, struct.error, ...)."""
    try:
        yield
    except Exception as exc:
        raise InvalidInput(f"undecodable image: {exc}", field) from None


def _to_8_bit(img: Image.Image) -> Image.Image:
    """16-bit grey scaled to 8 bits by its 0..65535 range; convert("L") would clip it, turning
    most of the picture white. It is the only deep image a PNG or JPEG opens as: I;16 or I;16B,
    or I in older Pillow (deep colour opens as 8-bit RGB(A); F comes from other formats)."""
    if img.mode != "I" and not img.mode.startswith("I;16"):
        return img
    deep = np.asarray(img, dtype=np.float64)
    return Image.fromarray(np.clip(np.rint(deep / 257.0), 0, 255).astype(np.uint8), "L")


def _flatten_alpha(img: Image.Image, keep_alpha: bool) -> Image.Image:
    """A transparent image over white, as viewers show it; convert("L") or ("RGB") would drop
    the alpha channel and leave transparent pixels their (usually black) colour."""
    transparent = "A" in img.getbands() or "transparency" in img.info
    if keep_alpha or not transparent:
        return img
    rgba = img.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)


def decode_image(value: str, field: str, shape: tuple[int, ...], max_pixels: int) -> np.ndarray:
    if "," in value[:100] and value.startswith("data:"):
        value = value.split(",", 1)[1]  # accept data: URLs as browsers produce them
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("image is not valid base64", field) from None
    if not raw:
        raise InvalidInput("image is empty", field)
    return decode_image_bytes(raw, field, shape, max_pixels)


def decode_vector(value: Sequence[float], field: str, dim: int) -> np.ndarray:
    if len(value) != dim:
        raise InvalidInput(f"vector has length {len(value)}; this collection needs {dim}", field)
    # cast first: a finite float64 such as 1e300 overflows to inf in float32
    with np.errstate(over="ignore"):
        arr = np.asarray(value, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InvalidInput(
            "vector contains NaN or infinity, or values outside the float32 range (3.4e38)",
            field,
        )
    return arr


def encode_png(pixels: np.ndarray) -> str:
    """float [0, 1] or uint8 image array -> base64 PNG."""
    arr = pixels if pixels.dtype == np.uint8 else np.clip(pixels * 255.0 + 0.5, 0, 255)
    arr = arr.astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")
