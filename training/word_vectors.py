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
    # float32 and in place: the co-occurrence matrix is the big object (20NG: ~2 GB as float64 COO)
    docs_terms = sp.csr_matrix(present[:, columns], dtype=np.float32)
    ppmi = sp.csr_matrix(docs_terms.T @ docs_terms)  # co-occurrence counts, exact in float32
    ppmi.setdiag(0)
    ppmi.eliminate_zeros()
    n_terms = len(columns)
    if ppmi.nnz == 0 or n_terms < 3:
        return columns, np.zeros((n_terms, 1))
    word = np.asarray(ppmi.sum(axis=1, dtype=np.float64)).ravel()
    total = word.sum()
    context = np.asarray(ppmi.sum(axis=0, dtype=np.float64)).ravel() ** CONTEXT_SMOOTHING
    context = context / context.sum() * total
    rows = np.repeat(np.arange(n_terms), np.diff(ppmi.indptr))
    log_word = np.log(np.maximum(word, 1e-300)).astype(np.float32)
    log_context = np.log(np.maximum(context, 1e-300)).astype(np.float32)
    ppmi.data = np.log(ppmi.data) + np.float32(np.log(total))  # log(joint * total / ...)
    ppmi.data -= log_word[rows]
    del rows
    ppmi.data -= log_context[ppmi.indices]
    ppmi.data[ppmi.data < 0] = 0  # positive PMI only
    ppmi.eliminate_zeros()
    ppmi = ppmi.astype(np.float64)  # SVD in double precision; only positive entries are left
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
