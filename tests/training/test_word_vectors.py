import numpy as np
import scipy.sparse as sp

from training.features import idf_of
from training.word_vectors import document_vectors, ppmi_word_vectors

# four topics of 6 terms each; every document draws 3 terms of one topic, so two documents of a
# topic often share no term at all, and terms of different topics never meet
N_TOPICS, TERMS = 4, 24
TOPICS = [np.arange(6 * t, 6 * t + 6) for t in range(N_TOPICS)]


def topic_corpus(n: int = 300, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, N_TOPICS, size=n)
    counts = np.zeros((n, TERMS), np.float32)
    for i, t in enumerate(topic):
        counts[i, rng.choice(TOPICS[t], 3, replace=False)] = rng.integers(1, 4, size=3)
    return sp.csr_matrix(counts), topic


def test_documents_of_one_topic_are_close_without_a_shared_term() -> None:
    counts, topic = topic_corpus()
    columns, vectors = ppmi_word_vectors(counts, dim=6)
    assert list(columns) == list(range(TERMS)) and vectors.shape == (TERMS, 6)
    docs = document_vectors(counts, columns, vectors, idf_of(counts).astype(np.float64))
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, rtol=1e-5)
    dense = counts.toarray() > 0
    disjoint = ~(dense[:, None, :] & dense[None, :, :]).any(-1)  # pairs sharing no term
    same = topic[:, None] == topic[None, :]
    cos = docs @ docs.T
    assert (disjoint & same).sum() > 500  # the case tf-idf cannot see: its cosine is 0 there
    assert cos[disjoint & same].mean() > 0.5 > cos[~same].mean()


def test_word_vectors_are_deterministic_and_skip_unknown_documents() -> None:
    counts, _ = topic_corpus()
    a = ppmi_word_vectors(counts, dim=4)[1]
    np.testing.assert_array_equal(a, ppmi_word_vectors(counts, dim=4)[1])
    columns, vectors = ppmi_word_vectors(counts, dim=4, max_terms=6)
    assert len(columns) == 6 and vectors.shape[0] == 6  # the most frequent terms only
    empty = sp.csr_matrix(np.vstack([counts.toarray()[:5], np.zeros((1, TERMS), np.float32)]))
    docs = document_vectors(empty, *ppmi_word_vectors(counts, dim=4), np.ones(TERMS))
    assert np.all(docs[-1] == 0) and np.all(np.linalg.norm(docs[:5], axis=1) > 0.99)


def test_degenerate_vocabularies_give_zero_vectors_not_errors() -> None:
    one_term = sp.csr_matrix(np.ones((5, 1), np.float32))
    columns, vectors = ppmi_word_vectors(one_term)
    assert len(columns) == 1 and not vectors.any()
    independent = sp.csr_matrix(np.eye(6, dtype=np.float32))  # no two terms ever meet
    assert not ppmi_word_vectors(independent)[1].any()
