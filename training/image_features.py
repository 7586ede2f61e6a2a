"""Histograms of oriented gradients (Dalal & Triggs): the local edge structure of an image, a view
in which two pictures of one object stay close under small shifts and changes of brightness or
contrast, where raw pixels drift apart.

Used for the training items' k-NN graph (``training.neighbours``) and, beside the pixels, as the
network's input (``training.features.ImageFeaturizer`` with ``gradients``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CELL = 4  # pixels per cell side: 7 x 7 cells on 28-pixel images, 8 x 8 on 32
BINS = 9  # unsigned orientations, 20 degrees each
CLIP = 0.2  # "L2-Hys": block vectors clipped at this after normalising, then normalised again
_CHUNK = 2048  # images per pass: bounds the temporaries to some 100 MB


def has_gradient_cells(shape: Sequence[int]) -> bool:
    """At least 2 x 2 cells, the smallest block."""
    return len(shape) >= 2 and shape[0] >= 2 * CELL and shape[1] >= 2 * CELL


def gradient_width(shape: Sequence[int]) -> int:
    """Columns of ``gradient_histograms`` for images of ``shape``."""
    if not has_gradient_cells(shape):
        raise ValueError(f"images of {tuple(shape)} are too small for {CELL}-pixel cells")
    return (shape[0] // CELL - 1) * (shape[1] // CELL - 1) * 4 * BINS


def gradient_histograms(pixels: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """HOG rows (n, blocks x 4 x BINS), float32, from flattened images (n, H*W[*C]) in [0, 1].

    Centred differences; colour images take each pixel's channel with the largest gradient; each
    gradient votes into its two nearest orientation bins by magnitude; 2 x 2-cell blocks with a
    stride of one cell, each L2-Hys normalised.
    """
    if not has_gradient_cells(shape):
        raise ValueError(f"images of {tuple(shape)} are too small for {CELL}-pixel cells")
    images = np.asarray(pixels, dtype=np.float32).reshape(len(pixels), *shape)
    return np.concatenate(
        [_chunk_histograms(images[a : a + _CHUNK]) for a in range(0, len(images), _CHUNK)]
    )


def _gradients(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx = np.zeros_like(images)
    gy = np.zeros_like(images)
    gx[:, :, 1:-1] = images[:, :, 2:] - images[:, :, :-2]
    gy[:, 1:-1] = images[:, 2:] - images[:, :-2]
    if images.ndim == 4:  # colour: the channel whose edge is strongest
        strongest = np.hypot(gx, gy).argmax(axis=-1)[..., None]
        gx = np.take_along_axis(gx, strongest, -1)[..., 0]
        gy = np.take_along_axis(gy, strongest, -1)[..., 0]
    return gx, gy


def _chunk_histograms(images: np.ndarray) -> np.ndarray:
    gx, gy = _gradients(images)
    n, height, width = gx.shape
    rows, cols = height // CELL, width // CELL
    gx, gy = gx[:, : rows * CELL, : cols * CELL], gy[:, : rows * CELL, : cols * CELL]
    magnitude = np.hypot(gx, gy)
    position = (np.arctan2(gy, gx) % np.pi) * (BINS / np.pi)
    lower = np.floor(position)
    upper_share = position - lower
    lower_bin = lower.astype(np.int64) % BINS
    upper_bin = (lower_bin + 1) % BINS
    cells = np.empty((n, rows, cols, BINS), np.float32)
    for b in range(BINS):
        votes = magnitude * ((lower_bin == b) * (1 - upper_share) + (upper_bin == b) * upper_share)
        cells[..., b] = votes.reshape(n, rows, CELL, cols, CELL).sum(axis=(2, 4))
    blocks = np.concatenate(
        [cells[:, :-1, :-1], cells[:, 1:, :-1], cells[:, :-1, 1:], cells[:, 1:, 1:]], axis=-1
    )
    blocks /= np.linalg.norm(blocks, axis=-1, keepdims=True) + 1e-6
    np.minimum(blocks, CLIP, out=blocks)
    blocks /= np.linalg.norm(blocks, axis=-1, keepdims=True) + 1e-6
    return blocks.reshape(n, -1)
