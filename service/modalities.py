"""What differs between text, image and vector collections: one object per modality.

A collection holds one ``Modality``, built from its spec and the input limits. It owns everything
that depends on the kind of item: the collection spec's shape keys, decoding a JSON payload (the
``payloads`` primitives), the batch a model takes, the bytes kept in storage and the JSON given
back, and the denoiser's output as the API returns it. Callers ask it; none of them branches on
the modality's name.
"""

from __future__ import annotations

import base64
import io
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from service.config import InputLimits
from service.errors import InvalidInput
from service.payloads import (
    decode_image,
    decode_image_bytes,
    decode_text,
    decode_vector,
    encode_png,
)
from service.schemas import Denoised, Term

Items = list[str] | np.ndarray  # what a model's encode / denoise takes
SHAPE_KEYS = {"dim": "vector", "image_shape": "image"}  # spec key -> the modality that owns it
DEFAULT_IMAGE_SHAPE = [28, 28]
PREVIEW_CHARS = 280  # a text hit's preview: its opening lines
PREVIEW_VALUES = 16  # a vector hit's preview: its first values
THUMBNAIL_SIZE = 64  # an image hit's preview: at most this many pixels a side


class Modality(ABC):
    """One collection's kind of item. ``name`` is also the JSON field that carries an item."""

    name: ClassVar[str]
    takes_files: ClassVar[bool] = False  # items may come as multipart file uploads
    pixels: ClassVar[bool] = False  # items are pictures (thumbnails, tangent images)
    # the reconstruction lives in the encoder's input space (not text's word distribution)
    reconstructs_features: ClassVar[bool] = True

    def __init__(self, spec: dict[str, Any], limits: InputLimits) -> None:
        self.spec = spec
        self.limits = limits

    # the collection spec -------------------------------------------------------------------
    @classmethod
    def spec_keys(
        cls, dim: int | None, image_shape: list[int] | None, copying: bool
    ) -> dict[str, Any]:
        """The shape keys of a new collection's spec; ``copying``: a model_from create, where a
        key left out is the copied model's. Refuses the keys of other modalities."""
        for key, value in (("dim", dim), ("image_shape", image_shape)):
            if value is not None and SHAPE_KEYS[key] != cls.name:
                raise InvalidInput(f"'{key}' is only for {SHAPE_KEYS[key]} collections", key)
        return {}

    @classmethod
    def spec_of_items(cls, items: Any) -> dict[str, Any]:
        """The shape keys that describe a dataset's items (the demo builds from datasets)."""
        return {}

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The input shape a model must take to serve this collection; None: any."""
        return None

    # payloads ------------------------------------------------------------------------------
    @abstractmethod
    def decode(self, value: Any, field: str) -> Any:
        """One JSON value -> the item as stored and encoded; InvalidInput naming ``field``."""

    def decode_all(self, values: Sequence[Any], fields: Sequence[str]) -> list[Any]:
        return [self.decode(v, f) for v, f in zip(values, fields, strict=True)]

    def decode_upload(self, raw: bytes, field: str) -> Any:
        """A file sent as multipart -> the JSON value of the item (``takes_files`` only)."""
        raise InvalidInput(f"this collection holds {self.name} items, not files", field)

    @abstractmethod
    def batch(self, decoded: Sequence[Any]) -> Items:
        """Decoded values -> the ``items`` a model takes."""

    @abstractmethod
    def to_bytes(self, value: Any) -> bytes: ...

    @abstractmethod
    def from_bytes(self, raw: bytes) -> Any: ...

    @abstractmethod
    def to_json(self, value: Any) -> Any:
        """A stored (or dataset) value -> its JSON form, as a client sends it."""

    @abstractmethod
    def denoised(self, out: Any) -> list[Denoised]:
        """A model's ``denoise`` output -> the API's reconstructions, one per item."""

    @abstractmethod
    def preview(self, value: Any) -> Any:
        """A stored value -> a bounded JSON preview of it (what a search hit card shows)."""

    def thumbnail(self, value: Any, size: int | None) -> bytes:
        """A stored value -> PNG bytes at most ``size`` pixels a side (None: as stored)."""
        raise InvalidInput(f"this collection holds {self.name} items, not images", "collection")

    @abstractmethod
    def corrupt(self, value: Any, level: float, mode: str, rng: np.random.RandomState) -> Any:
        """A stored value with a share ``level`` in [0, 1] of it destroyed, for a denoiser to
        restore; ``mode`` "noise" (replace by noise) or "mask" (blank out)."""


class TextModality(Modality):
    name = "text"
    reconstructs_features = False

    def decode(self, value: Any, field: str) -> str:
        return decode_text(value, field, self.limits.max_text_chars)

    def batch(self, decoded: Sequence[Any]) -> Items:
        return list(decoded)

    def to_bytes(self, value: Any) -> bytes:
        return str(value).encode("utf-8")

    def from_bytes(self, raw: bytes) -> str:
        return raw.decode("utf-8")

    def to_json(self, value: Any) -> str:
        return str(value)

    def denoised(self, out: Any) -> list[Denoised]:
        # term weights are bounded by the softmax: nothing to check
        return [Denoised(terms=[Term(term=t, weight=float(w)) for t, w in row]) for row in out]

    def corrupt(self, value: Any, level: float, mode: str, rng: np.random.RandomState) -> str:
        words = str(value).split()
        kept = [w for w in words if rng.random_sample() >= level]
        return " ".join(kept or words[:1])  # both modes drop words

    def preview(self, value: Any) -> str:
        text = str(value)
        return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "\u2026"


class ImageModality(Modality):
    name = "image"
    takes_files = True
    pixels = True

    @classmethod
    def spec_keys(
        cls, dim: int | None, image_shape: list[int] | None, copying: bool
    ) -> dict[str, Any]:
        super().spec_keys(dim, image_shape, copying)
        shape = image_shape or DEFAULT_IMAGE_SHAPE
        if any(v < 1 or v > 4096 for v in shape) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
            raise InvalidInput(
                "image_shape must be [H, W] or [H, W, C] with 1..4096 pixels a side, C 1, 3 or 4",
                "image_shape",
            )
        # with model_from, an image_shape left out is the model's, not the default
        return {"image_shape": image_shape if copying else shape}

    @classmethod
    def spec_of_items(cls, items: Any) -> dict[str, Any]:
        return {"image_shape": list(np.asarray(items).shape[1:])}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.spec["image_shape"])

    def decode(self, value: Any, field: str) -> np.ndarray:
        return decode_image(value, field, self.input_shape, self.limits.max_image_pixels)

    def decode_upload(self, raw: bytes, field: str) -> str:
        pixels = decode_image_bytes(raw, field, self.input_shape, self.limits.max_image_pixels)
        # re-encoded losslessly, so an upload is validated and stored like a JSON image
        return encode_png(pixels)

    def batch(self, decoded: Sequence[Any]) -> Items:
        return np.stack(decoded).astype(np.uint8)

    def to_bytes(self, value: Any) -> bytes:
        return np.ascontiguousarray(value).tobytes()

    def from_bytes(self, raw: bytes) -> np.ndarray:
        return np.frombuffer(raw, dtype=np.uint8).reshape(self.input_shape)

    def to_json(self, value: Any) -> str:
        return encode_png(np.asarray(value))

    def denoised(self, out: Any) -> list[Denoised]:
        images = np.asarray(out)
        check_finite(images, self.name)
        return [Denoised(image=encode_png(img)) for img in images]

    def corrupt(
        self, value: Any, level: float, mode: str, rng: np.random.RandomState
    ) -> np.ndarray:
        pixels = np.asarray(value, dtype=np.uint8).copy()
        hit = rng.random_sample(pixels.shape) < level
        fill = rng.randint(0, 256, pixels.shape) if mode == "noise" else np.zeros(pixels.shape)
        pixels[hit] = fill[hit].astype(np.uint8)
        return pixels

    def preview(self, value: Any) -> str:
        return base64.b64encode(self.thumbnail(value, THUMBNAIL_SIZE)).decode("ascii")

    def thumbnail(self, value: Any, size: int | None) -> bytes:
        pixels = np.asarray(value, dtype=np.uint8)
        image = Image.fromarray(
            pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
        )
        if size is not None and max(image.size) > size:
            image.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()


class VectorModality(Modality):
    name = "vector"

    @classmethod
    def spec_keys(
        cls, dim: int | None, image_shape: list[int] | None, copying: bool
    ) -> dict[str, Any]:
        super().spec_keys(dim, image_shape, copying)
        if dim is None and not copying:
            raise InvalidInput("vector collections need 'dim' (the vector length)", "dim")
        return {"dim": dim}

    @classmethod
    def spec_of_items(cls, items: Any) -> dict[str, Any]:
        return {"dim": int(items.shape[1])}

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (int(self.spec["dim"]),)

    def decode(self, value: Any, field: str) -> np.ndarray:
        return decode_vector(value, field, int(self.spec["dim"]))

    def batch(self, decoded: Sequence[Any]) -> Items:
        return np.stack(decoded).astype(np.float32)

    def to_bytes(self, value: Any) -> bytes:
        return np.ascontiguousarray(value, dtype=np.float32).tobytes()

    def from_bytes(self, raw: bytes) -> np.ndarray:
        return np.frombuffer(raw, dtype=np.float32)

    def to_json(self, value: Any) -> list[float]:
        return [float(v) for v in value]

    def denoised(self, out: Any) -> list[Denoised]:
        vectors = np.asarray(out, dtype=np.float64)
        check_finite(vectors, self.name)
        return [Denoised(vector=v.tolist()) for v in vectors]

    def corrupt(
        self, value: Any, level: float, mode: str, rng: np.random.RandomState
    ) -> np.ndarray:
        vector = np.asarray(value, dtype=np.float32).copy()
        hit = rng.random_sample(vector.shape) < level
        spread = float(vector.std()) or 1.0
        fill = rng.standard_normal(vector.shape) * spread if mode == "noise" else 0 * vector
        vector[hit] = fill[hit]
        return vector

    def preview(self, value: Any) -> list[float]:
        return [float(v) for v in np.asarray(value)[:PREVIEW_VALUES]]


MODALITIES: dict[str, type[Modality]] = {
    cls.name: cls for cls in (TextModality, ImageModality, VectorModality)
}


def modality_of(name: str, spec: dict[str, Any], limits: InputLimits) -> Modality:
    return MODALITIES[name](spec, limits)


def check_finite(out: np.ndarray, name: str) -> None:
    """A float32 input near its range overflows inside the network: refuse, don't send nulls."""
    finite = np.isfinite(out.reshape(len(out), -1)).all(axis=1)
    if not finite.all():
        i = int(np.argmin(finite))
        raise InvalidInput(
            "the model cannot reconstruct this item: its values are so far from the training"
            " data that the reconstruction is not finite",
            f"items[{i}].{name}",
        )
