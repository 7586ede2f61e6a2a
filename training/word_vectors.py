"""Word vectors learned from the training documents alone, and the document vectors they give.

Two documents that share no term have a tf-idf cosine of 0, however close their topics ("engine
failure" against "powerplant malfunction"); short texts hit this all the time. Word vectors from
the corpus's own co-occurrence statistics close that gap without any outside model: positive
pointwise mutual information between terms that occur in the same document (context counts
raised to 0.75, as in Levy, Goldberg & Dagan 2015), factorised by a truncated SVD (word vectors
U sqrt(S)); a document is the tf-idf weighted mean of its words' vectors with the corpus's common
direction removed (Arora et al.'s SIF), L2-normalised. Their k-NN graph joins the tf-idf and BM25
graphs in `training.neighbours`.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

WORD_VECTOR_DIM = 100
MAX_TERMS = 10000  # the most frequent terms get vectors; co-occurrence grows with their square
CONTEXT_SMOOTHING = 0.75
DENSE_SVD_TERMS = 1000  # small vocabularies: an exact dense SVD, no iterative solver to fail


def ppmi_word_vectors(
    counts: sp.csr_matrix, dim: int = WORD_VECTOR_DIM, max_terms: int = MAX_TERMS
) -> tuple[np.ndarray, np.ndarray]:
    """(columns, vectors): the kept term columns of ``counts`` (n_docs, n_terms) and their word
    vectors, float64 (len(columns), d) with d <= dim (fewer on tiny vocabularies)."""
    present = sp.csr_matrix(counts, dtype=np.float64)
    present.data[:] = 1.0
    df = np.asarray(present.sum(0)).ravel()
    columns = np.sort(np.argsort(-df, kind="stable")[:max_terms])
    columns = columns[df[columns] > 0]
    docs_terms = sp.csr_matrix(present[:, columns])
    cooc = sp.coo_matrix(docs_terms.T @ docs_terms)
    off_diagonal = cooc.row != cooc.col
    rows, cols, joint = cooc.row[off_diagonal], cooc.col[off_diagonal], cooc.data[off_diagonal]
    n_terms = len(columns)
    if len(joint) == 0 or n_terms < 3:
        return columns, np.zeros((n_terms, 1))
    total = joint.sum()
    word = np.bincount(rows, weights=joint, minlength=n_terms)
    context = np.bincount(cols, weights=joint, minlength=n_terms) ** CONTEXT_SMOOTHING
    context = context / context.sum() * total
    pmi = np.log(joint * total / (word[rows] * context[cols]))
    positive = pmi > 0
    ppmi = sp.csr_matrix(
        (pmi[positive], (rows[positive], cols[positive])), shape=(n_terms, n_terms)
    )
    if ppmi.nnz == 0:
        return columns, np.zeros((n_terms, 1))
    k = min(dim, n_terms - 2)
    if n_terms <= DENSE_SVD_TERMS:
        u, s, _ = np.linalg.svd(ppmi.toarray())
        u, s = u[:, :k], s[:k]
    else:
        v0 = np.random.default_rng(0).normal(size=n_terms)  # fixed start: deterministic vectors
        u, s, _ = svds(ppmi, k=k, v0=v0)
    return columns, u * np.sqrt(s)


def document_vectors(
    counts: sp.csr_matrix, columns: np.ndarray, vectors: np.ndarray, idf: np.ndarray
) -> np.ndarray:
    """SIF document vectors, float32 (n_docs, d), unit length (0 for documents without a known
    term): the log(1 + tf) * idf weighted mean of the word vectors, minus the mean document and
    its projection on the first principal direction."""
    weights = sp.csr_matrix(sp.csr_matrix(counts, dtype=np.float64)[:, columns])
    weights.data = np.log1p(weights.data) * idf[columns][weights.indices]
    mass = np.asarray(weights.sum(1)).ravel()
    docs = np.asarray(weights @ vectors) / np.maximum(mass, 1e-12)[:, None]
    known = mass > 0
    docs[known] -= docs[known].mean(0)
    if known.sum() > 1:
        common = np.linalg.svd(docs[known], full_matrices=False)[2][0]
        docs[known] -= np.outer(docs[known] @ common, common)
    norms = np.linalg.norm(docs, axis=1, keepdims=True)
    return (docs / np.maximum(norms, 1e-12)).astype(np.float32)
