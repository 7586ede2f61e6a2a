"""The modality objects: shape keys, payload round trips, denoise output."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from service.config import InputLimits
from service.errors import InvalidInput
from service.modalities import MODALITIES, modality_of
from tests.conftest import png_b64


def test_each_modality_owns_its_shape_key_and_refuses_the_others() -> None:
    assert MODALITIES["text"].spec_keys(None, None, copying=False) == {}
    assert MODALITIES["vector"].spec_keys(8, None, copying=False) == {"dim": 8}
    assert MODALITIES["image"].spec_keys(None, None, copying=False) == {"image_shape": [28, 28]}
    assert MODALITIES["image"].spec_keys(None, None, copying=True) == {"image_shape": None}
    with pytest.raises(InvalidInput) as err:
        MODALITIES["text"].spec_keys(8, None, copying=False)
    assert err.value.field == "dim"
    with pytest.raises(InvalidInput) as err:
        MODALITIES["vector"].spec_keys(8, [4, 4], copying=False)
    assert err.value.field == "image_shape"
    with pytest.raises(InvalidInput) as err:
        MODALITIES["vector"].spec_keys(None, None, copying=False)
    assert err.value.field == "dim"
    with pytest.raises(InvalidInput) as err:
        MODALITIES["image"].spec_keys(None, [4, 4, 2], copying=False)
    assert err.value.field == "image_shape"


@pytest.mark.parametrize(
    ("name", "spec", "value"),
    [
        ("text", {}, "héllo wörld"),
        ("vector", {"dim": 3}, [0.5, -1.0, 2.25]),
        ("image", {"image_shape": [4, 5]}, None),
    ],
)
def test_decode_store_and_answer_round_trip(name: str, spec: dict, value: object) -> None:
    modality = modality_of(name, spec, InputLimits())
    if value is None:
        value = png_b64(np.arange(20, dtype=np.uint8).reshape(4, 5) * 12)
    decoded = modality.decode(value, "items[0]")
    stored = modality.from_bytes(modality.to_bytes(decoded))
    np.testing.assert_array_equal(np.asarray(stored), np.asarray(decoded))
    again = modality.decode(modality.to_json(stored), "items[0]")
    np.testing.assert_array_equal(np.asarray(again), np.asarray(decoded))
    batch = modality.batch([decoded, decoded])
    assert len(batch) == 2


def test_input_shape_and_limits_come_from_the_spec() -> None:
    assert modality_of("text", {}, InputLimits()).input_shape is None
    assert modality_of("vector", {"dim": 7}, InputLimits()).input_shape == (7,)
    assert modality_of("image", {"image_shape": [3, 4, 3]}, InputLimits()).input_shape == (3, 4, 3)
    short = modality_of("text", {}, InputLimits(max_text_chars=5))
    with pytest.raises(InvalidInput, match="limit is 5") as err:
        short.decode("too long", "items[2].text")
    assert err.value.field == "items[2].text"


def test_only_images_take_files() -> None:
    image = modality_of("image", {"image_shape": [2, 2]}, InputLimits())
    text = modality_of("text", {}, InputLimits())
    assert image.takes_files and not text.takes_files
    buf = io.BytesIO()
    Image.fromarray(np.full((2, 2), 200, dtype=np.uint8)).save(buf, format="PNG")
    png = image.decode_upload(buf.getvalue(), "file")
    assert image.decode(png, "file").tolist() == [[200, 200], [200, 200]]
    with pytest.raises(InvalidInput) as err:
        text.decode_upload(b"abc", "file")
    assert err.value.field == "file"


def test_denoised_output_per_modality() -> None:
    text = modality_of("text", {}, InputLimits()).denoised([[("space", 0.5), ("orbit", 0.25)]])
    assert text[0].terms is not None and [t.term for t in text[0].terms] == ["space", "orbit"]
    image = modality_of("image", {"image_shape": [2, 2]}, InputLimits())
    out = image.denoised(np.full((1, 2, 2), 0.5, dtype=np.float32))
    assert out[0].image is not None
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(out[0].image))))
    assert pixels.shape == (2, 2) and int(pixels[0, 0]) == 128
    vector = modality_of("vector", {"dim": 2}, InputLimits())
    assert vector.denoised(np.array([[1.5, -2.0]], dtype=np.float32))[0].vector == [1.5, -2.0]
    with pytest.raises(InvalidInput) as err:  # an overflowing reconstruction is refused by item
        vector.denoised(np.array([[1.0, 2.0], [np.inf, 0.0]], dtype=np.float32))
    assert err.value.field == "items[1].vector"
