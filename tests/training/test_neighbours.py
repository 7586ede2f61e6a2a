from typing import Any

import numpy as np
import scipy.sparse as sp
from pytest import MonkeyPatch

from tests.training.test_train import TINY, clustered_vectors
from training.config import DEFAULT_EXACT_KNN_ROWS, TrainConfig
from training.features import fit_featurizer, lsa_rows
from training.neighbours import (
    is_short_text,
    nearest_neighbours,
    neighbour_lists,
    neighbour_targets,
    spectral_codes,
)


def test_nearest_neighbours_dense_and_sparse_agree_and_exclude_self() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((50, 8)).astype(np.float32)
    dense = nearest_neighbours(x, 5, block=16)
    sparse = nearest_neighbours(sp.csr_matrix(x), 5, block=7)
    np.testing.assert_array_equal(dense, sparse)
    assert not (dense == np.arange(50)[:, None]).any()
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    np.fill_diagonal(sims, -np.inf)
    np.testing.assert_array_equal(np.sort(dense, 1), np.sort(np.argsort(-sims, 1)[:, :5], 1))


def test_wide_dense_data_with_few_rows_is_searched_unprojected() -> None:
    x = np.random.default_rng(0).random((20, 100)).astype(np.float32)  # fewer rows than 64 axes
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    np.fill_diagonal(sims, -np.inf)
    expected = np.sort(np.argsort(-sims, 1)[:, :3], 1)
    np.testing.assert_array_equal(np.sort(nearest_neighbours(x, 3), 1), expected)


def test_neighbour_targets_average_word_shares() -> None:
    counts = sp.csr_matrix(np.array([[2, 0], [0, 5], [1, 1]], dtype=np.float32))
    knn = np.array([[1], [2], [0]])
    t = neighbour_targets(counts, knn, "multinomial").toarray()
    np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(t[0], [0.5, 0.5])  # (1, 0) and (0, 1) averaged
    dense = neighbour_targets(np.eye(3, dtype=np.float32), knn, "gaussian")
    np.testing.assert_allclose(dense[0], [0.5, 0.5, 0])


def test_spectral_codes_follow_the_graph_clusters() -> None:
    ds = clustered_vectors(n=200)
    knn = nearest_neighbours(ds.train.items, 10)
    codes = spectral_codes([knn], 8, seed=0)
    assert codes.shape == (200, 8) and set(np.unique(codes)) <= {0.0, 1.0}
    np.testing.assert_array_equal(codes, spectral_codes([knn], 8))
    y = ds.train.labels.argmax(1)
    dist = (codes[:, None, :] != codes[None, :, :]).sum(-1)
    same = y[:, None] == y[None, :]
    assert dist[same].mean() < 0.5 * dist[~same].mean()


def test_two_neighbour_graphs_together_separate_what_each_alone_merges() -> None:
    # four groups of 50 items; graph A cannot tell group 0 from 1 (nor 2 from 3), graph B cannot
    # tell 0 from 2 (nor 1 from 3): only their sum separates all four
    rng = np.random.default_rng(0)
    group = np.repeat(np.arange(4), 50)

    def knn_within(merge: np.ndarray) -> np.ndarray:
        return np.stack(
            [rng.choice(np.flatnonzero((merge == merge[i]) & (np.arange(200) != i)), 8, False)
             for i in range(200)]
        )  # fmt: skip

    graph_a, graph_b = knn_within(group // 2), knn_within(group % 2)

    def separation(codes: np.ndarray, g: int, h: int) -> float:
        """Mean Hamming distance between groups g and h minus within group g."""
        dist = (codes[:, None, :] != codes[None, :, :]).sum(-1)[group == g]
        return float(dist[:, group == h].mean() - dist[:, group == g].mean())

    both = spectral_codes([graph_a, graph_b], 8, seed=0)
    assert min(separation(both, g, h) for g in range(4) for h in range(4) if g != h) > 1.5
    alone = spectral_codes([graph_a], 8, seed=0)
    assert separation(alone, 0, 2) > 1.5 and abs(separation(alone, 0, 1)) < 0.5


def test_word_counts_get_tfidf_bm25_word_vector_and_lsa_graphs_other_data_one() -> None:
    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(0.3, size=(40, 30)).astype(np.float32))
    cfg = TrainConfig(**TINY, lsa_graph_dims=8)  # ~9 distinct terms a row: short texts
    featurizer = fit_featurizer("vector", counts)
    target = featurizer.targets(counts)
    knns = neighbour_lists(counts, featurizer, featurizer.inputs_from_targets(target), target,
                           cfg, "cpu")  # fmt: skip
    assert [k.shape for k in knns] == [(40, 3)] * 4  # tf-idf, BM25, word vectors, LSA
    assert not np.array_equal(knns[0], knns[1])  # the two weightings disagree somewhere
    assert not np.array_equal(knns[0], knns[2])
    assert not np.array_equal(knns[0], knns[3])
    off = TrainConfig(
        **{**TINY, "bm25_graph": False, "word_vector_graph": False, "lsa_graph_dims": 0}
    )
    alone = neighbour_lists(counts, featurizer, featurizer.inputs_from_targets(target), target,
                            off, "cpu")  # fmt: skip
    np.testing.assert_array_equal(alone[0], knns[0])
    assert len(alone) == 1

    vectors = clustered_vectors(n=40).train.items
    real = fit_featurizer("vector", vectors)
    x = real.inputs_from_targets(real.targets(vectors))
    assert len(neighbour_lists(vectors, real, x, x, cfg, "cpu")) == 1  # no word counts, no BM25
    none = TrainConfig(**{**TINY, "neighbours": 0})
    assert neighbour_lists(vectors, real, x, x, none, "cpu") == []


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    shared = [len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]
    return float(np.mean(shared))


def test_search_is_exact_up_to_the_threshold_and_approximate_above() -> None:
    ds = clustered_vectors(n=3000, dim=32, seed=1)
    x = ds.train.items
    exact = nearest_neighbours(x, 10)
    np.testing.assert_array_equal(nearest_neighbours(x, 10, exact_rows=3000), exact)
    approx = nearest_neighbours(x, 10, exact_rows=1000)
    assert approx.shape == exact.shape and not (approx == np.arange(3000)[:, None]).any()
    assert _recall(approx, exact) >= 0.9
    np.testing.assert_array_equal(approx, nearest_neighbours(x, 10, exact_rows=1000))


def test_approximate_search_of_sparse_rows_reranks_by_exact_cosine() -> None:
    rng = np.random.default_rng(0)
    topics = rng.random((10, 2000)) < 0.01  # each row: words of one topic plus a few stray words
    y = rng.integers(0, 10, size=2000)
    words = (topics[y] & (rng.random((2000, 2000)) < 0.6)) | (rng.random((2000, 2000)) < 0.002)
    x = sp.csr_matrix(words.astype(np.float32) * rng.random((2000, 2000)).astype(np.float32))
    exact = nearest_neighbours(x, 10)
    approx = nearest_neighbours(x, 10, exact_rows=500)
    assert not (approx == np.arange(2000)[:, None]).any()
    assert _recall(approx, exact) >= 0.9


def test_lsa_rows_are_unit_rows_on_the_leading_singular_directions() -> None:
    rng = np.random.default_rng(1)
    topics = rng.random((3, 50)) ** 4  # three topics' word profiles
    x = sp.csr_matrix(np.vstack([rng.poisson(5 * topics[i % 3]) for i in range(60)]), dtype=float)
    rows = lsa_rows(x, 8)
    assert rows.shape == (60, 8) and rows.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1, atol=1e-5)
    same = rows @ rows.T
    topic = np.arange(60) % 3
    assert (
        same[topic[:, None] == topic[None, :]].mean()
        > same[topic[:, None] != topic[None, :]].mean() + 0.3
    )
    assert lsa_rows(x[:5], 64).shape == (5, 4)  # never more directions than the data has


def test_images_get_a_pixel_and_a_gradient_graph_unless_too_small_or_turned_off() -> None:
    rng = np.random.default_rng(2)
    images = (rng.random((30, 12, 12)) * 255).astype(np.uint8)
    featurizer = fit_featurizer("image", images)
    x = featurizer.inputs_from_targets(featurizer.targets(images))
    cfg = TrainConfig(**TINY)
    knns = neighbour_lists(images, featurizer, x, x, cfg, "cpu")
    assert [k.shape for k in knns] == [(30, 3)] * 2 and not np.array_equal(knns[0], knns[1])
    off = TrainConfig(**{**TINY, "gradient_graph": False})
    (alone,) = neighbour_lists(images, featurizer, x, x, off, "cpu")
    np.testing.assert_array_equal(alone, knns[0])
    # an encoder that reads the histograms: the same graphs, the pixel one from its pixel columns
    reads = fit_featurizer("image", images, image_gradients=True)
    wide = reads.transform(images)
    both = neighbour_lists(images, reads, wide, wide, cfg, "cpu")
    for graph, again in zip(knns, both, strict=True):
        np.testing.assert_array_equal(graph, again)
    tiny = (rng.random((30, 6, 6)) * 255).astype(np.uint8)
    small = fit_featurizer("image", tiny)
    xs = small.inputs_from_targets(small.targets(tiny))
    assert len(neighbour_lists(tiny, small, xs, xs, cfg, "cpu")) == 1  # under 2 x 2 cells


def test_the_lsa_graph_joins_for_short_documents_only() -> None:
    rng = np.random.default_rng(0)
    short = sp.csr_matrix(rng.poisson(0.2, size=(40, 30)).astype(np.float32))  # ~5 terms a row
    long = sp.csr_matrix(rng.poisson(2.0, size=(40, 30)).astype(np.float32))  # ~26 terms a row
    cfg = TrainConfig(**TINY, lsa_graph_dims=8, lsa_graph_max_terms=12)
    assert is_short_text(short, cfg) and not is_short_text(long, cfg)
    explicit_zeros = sp.csr_matrix(short.toarray())
    explicit_zeros.data[:] = 0  # stored entries that are zero are not terms
    assert is_short_text(explicit_zeros, cfg)
    never = TrainConfig(**TINY, lsa_graph_dims=0, lsa_graph_max_terms=12)
    for counts, config, graphs in ((short, cfg, 4), (long, cfg, 3), (short, never, 3)):
        featurizer = fit_featurizer("vector", counts)
        target = featurizer.targets(counts)
        x = featurizer.inputs_from_targets(target)
        assert len(neighbour_lists(counts, featurizer, x, target, config, "cpu")) == graphs


def test_documents_turn_approximate_at_their_own_threshold(monkeypatch: MonkeyPatch) -> None:
    """By default word counts' graphs go approximate past DEFAULT_EXACT_KNN_ROWS["documents"]
    and other features' past ["other"]; a setting overrides both."""
    searched: list[tuple[int, int]] = []  # (rows, exact_rows) of every search

    def spy(x: Any, k: int, device: str = "cpu", exact_rows: int | None = None) -> np.ndarray:
        searched.append((x.shape[0], exact_rows))
        return nearest_neighbours(x, k, device, exact_rows=exact_rows)

    monkeypatch.setattr("training.neighbours.nearest_neighbours", spy)
    rng = np.random.default_rng(3)
    counts = sp.csr_matrix(rng.poisson(0.3, size=(40, 60)).astype(np.float32))
    words = fit_featurizer("vector", counts)
    target = words.targets(counts)
    cfg = TrainConfig(**TINY)
    neighbour_lists(counts, words, words.inputs_from_targets(target), target, cfg, "cpu")
    assert {rows for _, rows in searched} == {DEFAULT_EXACT_KNN_ROWS["documents"]}
    assert DEFAULT_EXACT_KNN_ROWS["documents"] < DEFAULT_EXACT_KNN_ROWS["other"]
    searched.clear()
    vectors = clustered_vectors(n=40).train.items
    real = fit_featurizer("vector", vectors)
    x = real.inputs_from_targets(real.targets(vectors))
    neighbour_lists(vectors, real, x, x, cfg, "cpu")
    assert searched == [(40, DEFAULT_EXACT_KNN_ROWS["other"])]
    searched.clear()
    set_to = TrainConfig(**{**TINY, "exact_knn_rows": 7})
    neighbour_lists(counts, words, words.inputs_from_targets(target), target, set_to, "cpu")
    assert searched and {rows for _, rows in searched} == {7}
    assert TrainConfig(**{**TINY, "exact_knn_rows": None}).exact_knn_rows_for(True) == 20000
