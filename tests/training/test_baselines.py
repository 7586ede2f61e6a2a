import numpy as np
import pytest
import scipy.sparse as sp

from training.baselines import (
    BASELINES,
    fit_lsh,
    fit_pca_itq,
    fit_pca_sign,
    itq_rotation,
    quantization_error,
)
from training.retrieval_metrics import evaluate_codes


def clustered(seed, n=1200, dim=40, n_clusters=10, spread=0.9):
    """Gaussian clusters on a random low-dimensional subspace, plus isotropic noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, 8)) * 3.0
    basis = np.linalg.qr(rng.standard_normal((dim, 8)))[0].T
    y = rng.integers(0, n_clusters, n)
    x = (centres[y] + spread * rng.standard_normal((n, 8))) @ basis
    x += 0.3 * rng.standard_normal((n, dim))
    return x.astype(np.float32), np.eye(n_clusters, dtype=np.uint8)[y]


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("bits", [8, 16])
def test_codes_are_packed_and_deterministic(name, bits):
    x, _ = clustered(0, n=300)
    a = BASELINES[name](x, bits, 3).encode(x[:50])
    b = BASELINES[name](x, bits, 3).encode(x[:50])
    assert a.dtype == np.uint8 and a.shape == (50, bits // 8)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", sorted(BASELINES))
def test_sparse_and_dense_features_give_the_same_codes(name):
    x, _ = clustered(1, n=300)
    x = np.where(x > 0.5, x, 0.0)  # mostly zeros, like tf-idf
    dense = BASELINES[name](x, 16, 0)
    sparse = BASELINES[name](sp.csr_matrix(x), 16, 0)
    # a few signs may flip where a projection is ~0 (different solvers), never many
    agree = (dense.encode(x) == sparse.encode(sp.csr_matrix(x))).mean()
    assert agree > 0.97


def test_itq_rotation_is_orthogonal():
    x, _ = clustered(2)
    hash_ = fit_pca_itq(x, 16, seed=0)
    r = hash_.rotation
    assert r is not None and r.shape == (16, 16)
    np.testing.assert_allclose(r.T @ r, np.eye(16), atol=1e-10)
    np.testing.assert_allclose(r @ r.T, np.eye(16), atol=1e-10)


def test_itq_lowers_quantisation_error_below_pca_sign():
    x, _ = clustered(3)
    assert quantization_error(fit_pca_itq(x, 16), x) < quantization_error(fit_pca_sign(x, 16), x)


def test_itq_iterations_never_raise_the_objective():
    x, _ = clustered(4)
    v = x - x.mean(axis=0)
    v = v @ np.linalg.svd(v, full_matrices=False)[2][:16].T
    errors = []
    for n_iter in (0, 1, 5, 20):
        p = v @ itq_rotation(v, n_iter=n_iter, seed=0)
        errors.append(((np.where(p >= 0, 1.0, -1.0) - p) ** 2).sum())
    assert all(b <= a + 1e-6 for a, b in zip(errors, errors[1:], strict=False))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_itq_retrieves_better_than_pca_sign_and_lsh_on_clusters(seed):
    x, labels = clustered(seed)
    db, queries = slice(200, None), slice(0, 200)

    def score(fit):
        hash_ = fit(x[db], 16, seed)
        return evaluate_codes(
            hash_.encode(x[queries]), hash_.encode(x[db]), labels[queries], labels[db], k=50
        ).precision_at_k

    itq, pca, lsh = score(fit_pca_itq), score(fit_pca_sign), score(fit_lsh)
    assert itq > pca
    assert itq > lsh


def test_fitted_on_training_features_only():
    x, _ = clustered(5, n=400)
    hash_ = fit_pca_itq(x[:300], 8)
    np.testing.assert_allclose(hash_.mean, x[:300].mean(axis=0), rtol=1e-5, atol=1e-6)
    # new rows are encoded with the training statistics, one row at a time or in a batch
    np.testing.assert_array_equal(
        hash_.encode(x[300:]), np.vstack([hash_.encode(r[None]) for r in x[300:]])
    )


def test_bad_arguments_name_the_problem():
    x, _ = clustered(6, n=100, dim=12)
    with pytest.raises(ValueError, match="multiple of 8"):
        fit_lsh(x, 12)
    with pytest.raises(ValueError, match="exceeds min"):
        fit_pca_itq(x, 16)
    hash_ = fit_pca_sign(x, 8)
    with pytest.raises(ValueError, match="fitted on 12"):
        hash_.encode(np.zeros((2, 5), dtype=np.float32))
