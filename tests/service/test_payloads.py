"""Image decoding: whatever a PNG holds becomes the collection's uint8 shape, or a 422."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.errors import InvalidInput
from service.payloads import decode_image_bytes

MAX_PIXELS = 1 << 20


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _broken_png() -> bytes:
    """IDAT's length field 100 bytes short: Pillow reads a chunk header out of the compressed
    data and raises SyntaxError("broken PNG file"), not an OSError."""
    pixels = np.random.RandomState(0).randint(0, 256, (28, 28)).astype(np.uint8)
    raw = bytearray(_png(Image.fromarray(pixels)))
    at = raw.find(b"IDAT") - 4
    length = int.from_bytes(raw[at : at + 4], "big")
    raw[at : at + 4] = (length - 100).to_bytes(4, "big")
    return bytes(raw)


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 3), (28, 28, 4)])
def test_a_corrupt_png_is_invalid_input_naming_the_field(shape: tuple[int, ...]) -> None:
    with pytest.raises(InvalidInput, match="undecodable image") as caught:
        decode_image_bytes(_broken_png(), "items[0].image", shape, MAX_PIXELS)
    assert caught.value.field == "items[0].image"


def test_a_16_bit_grey_png_is_scaled_to_8_bits_not_clipped() -> None:
    ramp = np.linspace(0, 65535, 28 * 28).reshape(28, 28)
    deep = Image.fromarray(ramp.astype(np.uint16))
    for shape in ((28, 28), (28, 28, 3)):
        out = decode_image_bytes(_png(deep), "image", shape, MAX_PIXELS).astype(np.int64)
        grey = out if out.ndim == 2 else out[:, :, 0]
        assert np.abs(grey - np.rint(ramp / 257)).max() <= 1


def _black_stroke_on_transparent() -> np.ndarray:
    rgba = np.zeros((28, 28, 4), np.uint8)  # transparent pixels are black (0, 0, 0, 0)
    rgba[8:20, 12:16] = [0, 0, 0, 255]
    return rgba


@pytest.mark.parametrize("source", ["RGBA", "LA", "P"])
@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 1), (28, 28, 3)])
def test_a_transparent_png_is_flattened_over_white(source: str, shape: tuple[int, ...]) -> None:
    rgba = Image.fromarray(_black_stroke_on_transparent())
    # P: a palette with a transparent entry, as PNG optimisers write small drawings
    image = rgba.convert(source) if source != "P" else rgba.quantize(2)
    if source == "P":
        image.info["transparency"] = int(np.asarray(image)[0, 0])
    out = decode_image_bytes(_png(image), "image", shape, MAX_PIXELS)
    assert (out[0, 0] == 255).all() and (out[10, 13] == 0).all()


def test_a_four_channel_collection_keeps_the_alpha_channel() -> None:
    rgba = _black_stroke_on_transparent()
    out = decode_image_bytes(_png(Image.fromarray(rgba)), "image", (28, 28, 4), MAX_PIXELS)
    np.testing.assert_array_equal(out, rgba)


def test_opaque_images_are_unchanged() -> None:
    grey = np.random.RandomState(1).randint(0, 256, (28, 28)).astype(np.uint8)
    out = decode_image_bytes(_png(Image.fromarray(grey)), "image", (28, 28), MAX_PIXELS)
    np.testing.assert_array_equal(out, grey)
