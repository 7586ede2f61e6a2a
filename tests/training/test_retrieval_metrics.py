import itertools

import numpy as np
import pytest

from training import retrieval_metrics
from training.retrieval_metrics import (
    distance_histograms,
    evaluate_codes,
    mean_average_precision,
    pr_curve,
    precision_at_k,
    radius_precision_recall,
)


def one_hot(labels, n_labels):
    return np.eye(n_labels, dtype=np.uint8)[labels]


def naive_distances(query_codes, db_codes):
    q = np.unpackbits(query_codes, axis=1).astype(int)
    d = np.unpackbits(db_codes, axis=1).astype(int)
    return (q[:, None, :] != d[None, :, :]).sum(axis=2)


def naive_relevance(query_labels, db_labels):
    return (query_labels.astype(int) @ db_labels.T.astype(int)) > 0


def all_tie_orders(distances):
    """Every ranking of the database consistent with the distances (ties in any order)."""
    groups = [np.flatnonzero(distances == d) for d in np.unique(distances)]
    for perm in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield np.concatenate([np.asarray(p, dtype=int) for p in perm])


def ap_of_ranking(rel, depth):
    top = rel[:depth]
    if top.sum() == 0:
        return 0.0
    precision = np.cumsum(top) / np.arange(1, len(top) + 1)
    return float((precision * top).sum() / top.sum())


def random_problem(rng, nq, nd, n_bytes, n_labels, p_label=0.3):
    return (
        rng.integers(0, 256, (nq, n_bytes), dtype=np.uint8),
        rng.integers(0, 256, (nd, n_bytes), dtype=np.uint8),
        (rng.random((nq, n_labels)) < p_label).astype(np.uint8),
        (rng.random((nd, n_labels)) < p_label).astype(np.uint8),
    )


@pytest.mark.parametrize("n_bytes", [1, 4, 9, 16])
@pytest.mark.parametrize("n_labels", [3, 70])
def test_histograms_match_a_naive_count(n_bytes, n_labels):
    rng = np.random.default_rng(n_bytes * 100 + n_labels)
    q, d, ql, dl = random_problem(rng, 13, 57, n_bytes, n_labels, p_label=0.05)
    counts, relevant = distance_histograms(q, d, ql, dl)
    dist, rel = naive_distances(q, d), naive_relevance(ql, dl)
    bits = n_bytes * 8
    assert counts.shape == relevant.shape == (13, bits + 1)
    for i in range(13):
        np.testing.assert_array_equal(counts[i], np.bincount(dist[i], minlength=bits + 1))
        np.testing.assert_array_equal(relevant[i], np.bincount(dist[i][rel[i]], minlength=bits + 1))


def test_chunking_does_not_change_the_histograms(monkeypatch):
    rng = np.random.default_rng(1)
    problem = random_problem(rng, 50, 40, 2, 5)
    whole = distance_histograms(*problem)
    # several query rows per chunk, uneven
    monkeypatch.setattr(retrieval_metrics, "_PAIRS_PER_CHUNK", 7)
    chunked = distance_histograms(*problem)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])


@pytest.mark.parametrize("seed", range(12))
def test_tie_aware_metrics_equal_the_average_over_every_tie_order(seed):
    rng = np.random.default_rng(seed)
    nd = 6
    # 2-bit codes in one byte: at most 3 distinct distances for 6 items, so ties everywhere
    db = (rng.integers(0, 4, (nd, 1)) << 6).astype(np.uint8)
    q = (rng.integers(0, 4, (1, 1)) << 6).astype(np.uint8)
    ql, dl = (
        (rng.random((1, 3)) < 0.5).astype(np.uint8),
        (rng.random((nd, 3)) < 0.4).astype(np.uint8),
    )
    counts, relevant = distance_histograms(q, db, ql, dl)
    dist, rel = naive_distances(q, db)[0], naive_relevance(ql, dl)[0].astype(float)
    for cut in range(1, nd + 1):
        orders = list(all_tie_orders(dist))
        expected_p = np.mean([rel[o][:cut].mean() for o in orders])
        expected_ap = np.mean([ap_of_ranking(rel[o], cut) for o in orders])
        assert precision_at_k(counts, relevant, cut)[0] == pytest.approx(expected_p, abs=1e-12)
        assert mean_average_precision(counts, relevant, cut)[0] == pytest.approx(
            expected_ap, abs=1e-12
        )


def test_without_ties_map_is_the_textbook_average_precision():
    # distinct distances 0..7: the ranking is fixed
    db = np.packbits(np.tril(np.ones((8, 8), dtype=np.uint8), k=-1), axis=1)
    q = np.zeros((1, 1), dtype=np.uint8)
    rel = np.array([1, 0, 1, 1, 0, 0, 1, 0])
    dl = one_hot(1 - rel, 2)
    ql = one_hot(np.array([0]), 2)
    counts, relevant = distance_histograms(q, db, ql, dl)
    assert mean_average_precision(counts, relevant, 5)[0] == pytest.approx((1 + 2 / 3 + 3 / 4) / 3)
    assert precision_at_k(counts, relevant, 4)[0] == pytest.approx(3 / 4)


def test_identical_codes_score_the_share_of_relevant_items():
    # every item ties at distance 0, so any cut-off sees the database's relevant share
    db_labels = one_hot(np.array([0, 0, 1, 1, 1]), 2)
    codes = np.zeros((5, 2), dtype=np.uint8)
    m = evaluate_codes(codes[:1], codes, db_labels[:1], db_labels, k=3, map_depth=4)
    assert m.precision_at_k == pytest.approx(2 / 5)
    assert m.precision_within_radius == pytest.approx(2 / 5)
    assert m.recall_within_radius == pytest.approx(1.0)


def test_codes_that_equal_the_labels_are_perfect():
    rng = np.random.default_rng(3)
    classes = rng.integers(0, 4, 200)
    codes = np.packbits(one_hot(classes, 4).repeat(4, axis=1), axis=1)  # 16 bits
    labels = one_hot(classes, 4)
    m = evaluate_codes(codes[:40], codes[40:], labels[:40], labels[40:], k=10, map_depth=20)
    assert m.precision_at_k == 1.0
    assert m.mean_average_precision == pytest.approx(1.0)
    assert m.precision_within_radius == 1.0
    assert m.recall_within_radius == 1.0
    assert m.empty_within_radius == 0.0


def test_radius_precision_and_recall_match_a_naive_lookup():
    rng = np.random.default_rng(4)
    q, d, ql, dl = random_problem(rng, 30, 200, 1, 4)
    counts, relevant = distance_histograms(q, d, ql, dl)
    dist, rel = naive_distances(q, d), naive_relevance(ql, dl)
    for radius in (0, 2, 5):
        precision, recall = radius_precision_recall(counts, relevant, radius)
        for i in range(30):
            hit = dist[i] <= radius
            want_p = rel[i][hit].mean() if hit.any() else 0.0
            want_r = rel[i][hit].sum() / rel[i].sum() if rel[i].any() else 0.0
            assert precision[i] == pytest.approx(want_p)
            assert recall[i] == pytest.approx(want_r)


def test_pr_curve_recall_grows_to_one_over_all_radii():
    rng = np.random.default_rng(5)
    counts, relevant = distance_histograms(*random_problem(rng, 20, 100, 2, 3))
    curve = pr_curve(counts, relevant)
    assert curve.radius == list(range(17))
    assert np.all(np.diff(curve.recall) >= 0)
    assert curve.recall[-1] == pytest.approx(1.0)
    # at full radius everything is returned: precision is the pooled share of relevant pairs
    assert curve.precision[-1] == pytest.approx(relevant.sum() / counts.sum())


def test_precision_at_k_does_not_depend_on_database_order():
    rng = np.random.default_rng(6)
    q, d, ql, dl = random_problem(rng, 25, 300, 1, 5)
    perm = rng.permutation(300)
    a = evaluate_codes(q, d, ql, dl, k=50, map_depth=100)
    b = evaluate_codes(q, d[perm], ql, dl[perm], k=50, map_depth=100)
    assert a.precision_at_k == pytest.approx(b.precision_at_k)
    assert a.mean_average_precision == pytest.approx(b.mean_average_precision)


def test_k_and_depth_are_clipped_to_the_database():
    rng = np.random.default_rng(7)
    m = evaluate_codes(*random_problem(rng, 5, 20, 1, 2))
    assert (m.k, m.map_depth, m.n_database, m.n_queries, m.bits) == (20, 20, 20, 5, 8)
    assert set(m.to_dict()) >= {"precision_at_k", "mean_average_precision", "pr_curve"}


def test_bad_inputs_are_rejected_with_the_field_named():
    codes = np.zeros((3, 2), dtype=np.uint8)
    labels = np.ones((3, 2), dtype=np.uint8)
    with pytest.raises(ValueError, match="same model"):
        distance_histograms(codes, np.zeros((3, 4), dtype=np.uint8), labels, labels)
    with pytest.raises(ValueError, match="query_codes must be packed uint8"):
        distance_histograms(codes.astype(np.int64), codes, labels, labels)
    with pytest.raises(ValueError, match="db_labels"):
        distance_histograms(codes, codes, labels, labels[:2])
    with pytest.raises(ValueError, match="label columns"):
        distance_histograms(codes, codes, labels, np.ones((3, 5), dtype=np.uint8))
    with pytest.raises(ValueError, match="at least one query"):
        distance_histograms(codes[:0], codes, labels[:0], labels)
    counts, relevant = distance_histograms(codes, codes, labels, labels)
    with pytest.raises(ValueError, match="k must be between 1"):
        precision_at_k(counts, relevant, 4)
    with pytest.raises(ValueError, match="radius"):
        radius_precision_recall(counts, relevant, -1)


def _naive_cosine_precision(q, d, ql, dl, k):
    """Average over many random tie orders of a plain sort: the expectation the function gives."""
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    rng = np.random.default_rng(0)
    scores = []
    for sims, labels in zip(qn @ dn.T, ql, strict=True):
        relevant = (dl & labels).any(axis=1)
        for _ in range(400):
            order = np.lexsort((rng.random(len(sims)), -np.round(sims, 6)))
            scores.append(relevant[order[:k]].mean())
    return float(np.mean(scores))


@pytest.mark.parametrize("sparse", [False, True])
def test_cosine_knn_precision_is_tie_aware_and_takes_sparse_rows(sparse):
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    # integer rows with many zeros: plenty of exact ties, including at cosine 0
    q = rng.integers(0, 2, size=(6, 5)).astype(np.float64) * rng.integers(0, 2, size=(6, 5))
    d = rng.integers(0, 2, size=(40, 5)).astype(np.float64) * rng.integers(0, 2, size=(40, 5))
    q[:, 0] += 0.5  # no all-zero rows: cosine is defined
    d[:, 0] += 0.5
    ql = rng.integers(0, 2, size=(6, 3)).astype(bool)
    dl = rng.integers(0, 2, size=(40, 3)).astype(bool)
    expected = _naive_cosine_precision(q, d, ql, dl, k=7)
    as_input = sp.csr_matrix if sparse else np.asarray
    got = retrieval_metrics.cosine_knn_precision(
        as_input(q), as_input(d), ql.astype(np.uint8), dl.astype(np.uint8), k=7, chunk=4
    )
    assert got == pytest.approx(expected, abs=0.01)
    assert 0.0 < got < 1.0
