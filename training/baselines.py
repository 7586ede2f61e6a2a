"""Classic binary-hashing baselines, fitted on training features only.

- LSH: signs of random Gaussian projections of the centred data (Charikar 2002; centred as in
  Gong & Lazebnik's comparisons, otherwise non-negative features put most bits at 1).
- PCA sign: signs of the top `bits` principal components.
- PCA-ITQ: PCA followed by the orthogonal rotation that minimises the quantisation error
  ||B - V R||_F, found by 50 alternating steps (Gong & Lazebnik, CVPR 2011, Iterative Quantization).

Each is a `LinearHash`: codes = packbits((x - mean) @ projection > 0), so fitting and encoding
work on dense arrays and SciPy sparse matrices alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from models.code_width import CODE_WIDTHS

LOG = logging.getLogger(__name__)

Features: TypeAlias = np.ndarray | sp.spmatrix  # dense or SciPy sparse, (n, n_features)

# Above this many features the covariance matrix gets large, so PCA switches to ARPACK.
_MAX_COVARIANCE_DIM = 2048


@dataclass(frozen=True)
class LinearHash:
    """codes = packbits((x - mean) @ projection > 0); projection is (n_features, bits)."""

    name: str
    mean: np.ndarray  # float64 (n_features,)
    projection: np.ndarray  # float64 (n_features, bits)
    rotation: np.ndarray | None = None  # ITQ only: the learned (bits, bits) orthogonal rotation

    @property
    def bits(self) -> int:
        return int(self.projection.shape[1])

    def project(self, x: Features) -> np.ndarray:
        """Real-valued projections, float64 (n, bits)."""
        _check_features(x, "x")
        if x.shape[1] != self.projection.shape[0]:
            raise ValueError(
                f"{self.name}: x has {x.shape[1]} features, the hash was fitted on "
                f"{self.projection.shape[0]}"
            )
        # (x - mean) @ W without densifying a sparse x
        return np.asarray(x @ self.projection) - self.mean @ self.projection

    def encode(self, x: Features) -> np.ndarray:
        """Packed codes, uint8 (n, bits // 8) in numpy.packbits order."""
        return np.packbits(self.project(x) > 0, axis=1)


def _check_features(x: Features, name: str) -> None:
    if len(x.shape) != 2:
        raise ValueError(f"{name} must be a 2-D feature matrix (n, n_features), got {x.shape}")


def _check_bits(bits: int, x: Features) -> None:
    CODE_WIDTHS.check(bits)
    if bits > min(x.shape):
        raise ValueError(
            f"bits={bits} exceeds min(n_samples, n_features)={min(x.shape)}; "
            "PCA cannot give that many components"
        )


def _one_blas_thread() -> threadpool_limits:
    """These fits are tall-skinny products; multi-threaded OpenBLAS spin-waits when other
    processes share the cores (PCA and ITQ measured 5-10x slower on 2 busy cores), and one
    thread loses little on an idle machine."""
    return threadpool_limits(limits=1, user_api="blas")


def _mean(x: Features) -> np.ndarray:
    return np.asarray(x.mean(axis=0), dtype=np.float64).ravel()


def fit_lsh(x: Features, bits: int, seed: int = 0) -> LinearHash:
    """Random-hyperplane LSH on the centred training features."""
    _check_features(x, "x")
    CODE_WIDTHS.check(bits)
    rng = np.random.default_rng(seed)
    projection = rng.standard_normal((x.shape[1], bits))
    return LinearHash("lsh", _mean(x), projection)


def _pca(x: Features, bits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, components (n_features, bits)), components by decreasing variance."""
    _check_features(x, "x")
    _check_bits(bits, x)
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=np.float64)
        solver = "arpack"  # implicit centring: never densify a large sparse vocabulary
    elif x.shape[1] <= _MAX_COVARIANCE_DIM:
        solver = "covariance_eigh"  # exact, and cheap when n_samples >> n_features
    else:
        solver = "randomized"  # measured 3x faster than ARPACK on dense 11k x 5k tf-idf
    with _one_blas_thread():
        pca = PCA(n_components=bits, svd_solver=solver, random_state=seed).fit(x)
    return np.asarray(pca.mean_, dtype=np.float64), pca.components_.T.astype(np.float64)


def fit_pca_sign(x: Features, bits: int, seed: int = 0) -> LinearHash:
    """Signs of the top `bits` principal components."""
    mean, components = _pca(x, bits, seed)
    return LinearHash("pca_sign", mean, components)


def itq_rotation(v: np.ndarray, n_iter: int = 50, seed: int = 0) -> np.ndarray:
    """Orthogonal R (bits, bits) that locally minimises ||sign(V R) - V R||_F.

    v : float (n, bits), centred PCA projections. Alternates B = sign(V R) with the orthogonal
    Procrustes solution R = argmin ||B - V R||_F (an SVD of V^T B).
    """
    bits = v.shape[1]
    rng = np.random.default_rng(seed)
    rotation, _ = np.linalg.qr(rng.standard_normal((bits, bits)))
    with _one_blas_thread():
        for _ in range(n_iter):
            b = np.where(v @ rotation >= 0, 1.0, -1.0)
            u, _, wt = np.linalg.svd(v.T @ b)
            rotation = u @ wt
    return rotation


def fit_pca_itq(x: Features, bits: int, seed: int = 0, n_iter: int = 50) -> LinearHash:
    """PCA to `bits` dimensions, then the ITQ rotation learned on the training projections."""
    mean, components = _pca(x, bits, seed)
    v = np.asarray(x @ components) - mean @ components
    rotation = itq_rotation(v, n_iter=n_iter, seed=seed)
    return LinearHash("pca_itq", mean, components @ rotation, rotation=rotation)


BASELINES: dict[str, Callable[[Features, int, int], LinearHash]] = {
    "lsh": fit_lsh,
    "pca_sign": fit_pca_sign,
    "pca_itq": fit_pca_itq,
}


def quantization_error(hash_: LinearHash, x: Features) -> float:
    """Mean ||sign(p) - p||^2 per item for the hash's projections p of x (ITQ's objective)."""
    p = hash_.project(x)
    return float(((np.where(p >= 0, 1.0, -1.0) - p) ** 2).sum(axis=1).mean())
