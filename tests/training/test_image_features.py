import numpy as np
import pytest

from training.image_features import BINS, gradient_histograms, has_gradient_cells


def _bars(n: int, vertical: bool, shift: int = 0) -> np.ndarray:
    images = np.zeros((n, 16, 16), np.float32)
    cols = np.arange(2 + shift, 16, 4)
    if vertical:
        images[:, :, cols] = 1.0
    else:
        images[:, cols, :] = 1.0
    return images.reshape(n, -1)


def test_edges_vote_into_their_orientation_and_rows_are_unit_blocks() -> None:
    vertical = gradient_histograms(_bars(1, True), (16, 16))
    horizontal = gradient_histograms(_bars(1, False), (16, 16))
    assert vertical.shape == (1, 3 * 3 * 4 * BINS) and vertical.dtype == np.float32
    per_bin_v = vertical.reshape(-1, BINS).sum(0)
    per_bin_h = horizontal.reshape(-1, BINS).sum(0)
    assert per_bin_v.argmax() == 0  # vertical bars: horizontal gradients, angle 0
    assert per_bin_h.argmax() == BINS // 2  # horizontal bars: vertical gradients, angle 90
    blocks = vertical.reshape(-1, 4 * BINS)
    np.testing.assert_allclose(np.linalg.norm(blocks, axis=1), 1.0, atol=1e-3)


def test_a_shifted_or_dimmed_picture_stays_closer_than_in_pixels() -> None:
    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float((a @ b.T).item() / (np.linalg.norm(a) * np.linalg.norm(b)))

    base, shifted = _bars(1, True), _bars(1, True, shift=1)
    assert cosine(base, shifted) == 0.0  # no pixel in common
    hog = [gradient_histograms(x, (16, 16)) for x in (base, shifted, 0.5 * base, _bars(1, False))]
    assert cosine(hog[0], hog[1]) > 0.9
    assert cosine(hog[0], hog[2]) == pytest.approx(1.0, abs=1e-3)  # contrast does not matter
    assert cosine(hog[0], hog[3]) < 0.5  # but orientation does


def test_colour_images_and_size_limits() -> None:
    rng = np.random.default_rng(0)
    colour = rng.random((3, 12, 12, 3)).astype(np.float32)
    assert gradient_histograms(colour.reshape(3, -1), (12, 12, 3)).shape == (3, 2 * 2 * 4 * BINS)
    assert has_gradient_cells((8, 8)) and not has_gradient_cells((7, 28))
    with pytest.raises(ValueError, match="too small"):
        gradient_histograms(np.zeros((1, 49)), (7, 7))
