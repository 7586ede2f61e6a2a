"""Neighbourhoods of the training items: exact k-NN search, graphs, and the codes they imply.

Fine-tuning learns from the training items' nearest neighbours (cosine similarity, training split
only) in two ways: the decoder rebuilds the mean of an item and its neighbours, and the code units
learn target bits read off the k-NN graph. Those bits are the graph's leading non-trivial
eigenvectors (a Laplacian eigenmap, as in spectral hashing / self-taught hashing) scaled by their
eigenvalues squared (diffusion-map coordinates), rotated by ITQ to lose least when thresholded.
Word counts get three graphs, summed after normalisation: under tf-idf and under BM25 weights (the
two weightings disagree on many neighbours and their union is the better guide), between
documents' mean word vectors learned from the corpus itself, which link documents on one topic
that share few terms; short texts (`is_short_text`) a fourth on the input's leading LSA
directions (the global structure PCA-ITQ hashes by, which wins on short titles). Images get two:
pixels, and histograms of oriented gradients (`training.image_features`), which stay close under
small shifts and lighting changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import faiss
import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import eigsh
from sklearn.utils.extmath import randomized_svd

from training.config import TrainConfig
from training.features import (
    CountVectorFeaturizer,
    Featurizer,
    ImageFeaturizer,
    TextFeaturizer,
    bm25_rows,
    idf_of,
    lsa_rows,
)
from training.image_features import has_gradient_cells
from training.word_vectors import document_vectors, ppmi_word_vectors

Matrix: TypeAlias = np.ndarray | sp.csr_matrix
_KNN_DIM = 64  # dense inputs are projected on their top principal axes before the k-NN search
# approximate search: sparse rows are projected on this many singular directions, and this many
# candidates per neighbour are re-ranked by their exact cosine; lists probed per query
_ANN_DIM = 128
_RERANK_FACTOR = 8
_N_PROBE = 32
# spectral embedding weighted by eigenvalue**t (diffusion-map coordinates, t = 2) before ITQ, so
# the smoother leading eigenvectors weigh more in the rotation
DIFFUSION_TIME = 2


def _unit_rows(x: sp.csr_matrix) -> sp.csr_matrix:
    xs = sp.csr_matrix(x, dtype=np.float32)
    norms = np.sqrt(np.asarray(xs.multiply(xs).sum(1)).ravel())
    return sp.csr_matrix(sp.diags(1 / np.maximum(norms, 1e-12)) @ xs)


def _dense_unit_rows(x: np.ndarray, device: str) -> torch.Tensor:
    """Dense rows on their top principal axes (when wider than _KNN_DIM), unit length."""
    dense = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    if dense.shape[1] > _KNN_DIM and dense.shape[0] > _KNN_DIM:
        centred = dense - dense.mean(0)
        _, _, v = torch.pca_lowrank(centred, q=_KNN_DIM, center=False, niter=3)
        dense = centred @ v  # (n, 64) principal components
    return dense / dense.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _cosine_blocks(x: Matrix, device: str) -> Callable[[int, int], torch.Tensor]:
    """A function giving the cosine similarities of rows a..b against all rows, (b - a, n)."""
    if sp.issparse(x):
        xs = _unit_rows(x)
        xt = xs.T.tocsr()

        def sparse_sims(a: int, b: int) -> torch.Tensor:
            return torch.from_numpy((xs[a:b] @ xt).toarray()).to(device)

        return sparse_sims
    dense = _dense_unit_rows(x, device)

    def dense_sims(a: int, b: int) -> torch.Tensor:
        return dense[a:b] @ dense.T

    return dense_sims


def nearest_neighbours(
    x: Matrix, k: int, device: str = "cpu", block: int = 1024, exact_rows: int | None = None
) -> np.ndarray:
    """Indices (n, k) of each row's k most cosine-similar other rows: exact and blockwise (time
    quadratic in n) up to ``exact_rows`` rows (None: always), approximate above."""
    n = x.shape[0]
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), dtype=np.int64)
    if exact_rows is not None and n > exact_rows:
        return approximate_neighbours(x, k, device)
    sims_of = _cosine_blocks(x, device)
    out = np.empty((n, k), dtype=np.int64)
    for a in range(0, n, block):
        b = min(a + block, n)
        sims = sims_of(a, b)  # (b - a, n)
        sims[torch.arange(b - a), torch.arange(a, b)] = -math.inf  # never your own neighbour
        out[a:b] = sims.topk(k, dim=1).indices.cpu().numpy()
    return out


def approximate_neighbours(x: Matrix, k: int, device: str = "cpu", seed: int = 0) -> np.ndarray:
    """Indices (n, k) of each row's approximate k most cosine-similar other rows, in time about
    n^1.5: FAISS inverted lists over unit vectors (dense rows on their principal axes as in the
    exact search; sparse rows on their top singular directions, then the candidates re-ranked by
    their exact cosine, since a 128-d projection of a large vocabulary blurs close neighbours)."""
    n = x.shape[0]
    if sp.issparse(x):
        xs = _unit_rows(x)
        vectors = _sparse_projection(xs, seed)
        found = _ivf_search(vectors, min(_RERANK_FACTOR * k, n - 1) + 1, seed)
        return _rerank(xs, _without_self(found, min(_RERANK_FACTOR * k, n - 1)), k)
    vectors = _dense_unit_rows(x, device).cpu().numpy()
    return _without_self(_ivf_search(vectors, k + 1, seed), k)


def _sparse_projection(xs: sp.csr_matrix, seed: int) -> np.ndarray:
    """Unit rows (n, <= _ANN_DIM) of xs on its top right singular vectors (uncentred: LSA)."""
    dim = min(_ANN_DIM, xs.shape[0] - 1, xs.shape[1] - 1)
    u, s, _ = randomized_svd(xs, dim, n_iter=3, random_state=seed)
    vectors = np.ascontiguousarray(u * s, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _ivf_search(vectors: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Inner-product search of every row among all rows, (n, k) ids, -1 where a row found fewer."""
    n, dim = vectors.shape
    # about 4 sqrt(n) lists (FAISS's guideline), each with enough rows to train its centroid
    n_lists = max(1, min(int(4 * math.sqrt(n)), n // 40))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, n_lists, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(vectors)
    index.add(vectors)
    index.nprobe = min(n_lists, _N_PROBE)
    _, ids = index.search(vectors, k)
    return ids.astype(np.int64)


def _without_self(found: np.ndarray, k: int) -> np.ndarray:
    """(n, k) of a search's results with each row's own id and the empty slots (-1) dropped;
    a row left short repeats its best neighbour."""
    n = found.shape[0]
    keep = (found != np.arange(n)[:, None]) & (found >= 0)
    order = np.argsort(~keep, axis=1, kind="stable")  # kept ids first, in rank order
    out = np.take_along_axis(found, order, axis=1)[:, :k]
    short = ~np.take_along_axis(keep, order, axis=1)[:, :k]
    out[short] = np.broadcast_to(out[:, :1], out.shape)[short]
    return out


def _rerank(xs: sp.csr_matrix, candidates: np.ndarray, k: int, block: int = 512) -> np.ndarray:
    """The k of each row's candidates (n, c) with the highest exact cosine (xs: unit rows)."""
    n, c = candidates.shape
    out = np.empty((n, k), dtype=np.int64)
    for a in range(0, n, block):
        b = min(a + block, n)
        cand = candidates[a:b]
        left = xs[np.repeat(np.arange(a, b), c)]
        sims = np.asarray(left.multiply(xs[cand.ravel()]).sum(1)).reshape(b - a, c)
        best = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        out[a:b] = np.take_along_axis(cand, best, axis=1)
    return out


def neighbour_targets(target: Matrix, knn: np.ndarray, likelihood: str) -> Matrix:
    """Mean of each item's target and its neighbours' targets (word shares for counts)."""
    n = target.shape[0]
    if likelihood == "multinomial":  # every document counts once, whatever its length
        t = sp.csr_matrix(target, dtype=np.float32)
        length = np.asarray(t.sum(1)).ravel()
        target = sp.csr_matrix(sp.diags(1 / np.maximum(length, 1e-12)) @ t)
    if knn.shape[1] == 0:
        return target
    k = knn.shape[1]
    cols = np.concatenate([np.arange(n)[:, None], knn], axis=1).ravel()
    graph = sp.csr_matrix(
        (
            np.full(n * (k + 1), 1 / (k + 1), dtype=np.float32),
            cols,
            np.arange(0, n * (k + 1) + 1, k + 1),
        ),
        shape=(n, n),
    )
    mean = graph @ target
    return (
        sp.csr_matrix(mean, dtype=np.float32) if sp.issparse(mean) else np.asarray(mean, np.float32)
    )


def knn_graph(knn: np.ndarray) -> sp.csr_matrix:
    """The symmetric 0/1 adjacency (n, n) of a k-NN list (n, k): i ~ j if either lists the other."""
    n, k = knn.shape
    graph = sp.csr_matrix(
        (np.ones(n * k), knn.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n), dtype=np.float64
    )
    return sp.csr_matrix(((graph + graph.T) > 0).astype(np.float64))


def _normalised(graph: sp.csr_matrix) -> sp.csr_matrix:
    """D^-1/2 G D^-1/2: eigenvalues in [-1, 1], every item weighing the same."""
    inv_sqrt_degree = sp.diags(1 / np.sqrt(np.maximum(np.asarray(graph.sum(1)).ravel(), 1e-12)))
    return sp.csr_matrix(inv_sqrt_degree @ graph @ inv_sqrt_degree)


def spectral_codes(
    knns: Sequence[np.ndarray], bits: int, seed: int = 0, itq_iterations: int = 50
) -> np.ndarray:
    """Binary codes (n, bits) in {0, 1}: the diffusion embedding of the k-NN graph(s) + ITQ.

    knns: one or more (n, k) neighbour lists of the same items (e.g. under two term weightings);
    several are combined as the sum of their normalised adjacencies, so each counts equally.
    """
    graphs = [knn_graph(knn) for knn in knns]
    graph = graphs[0] if len(graphs) == 1 else sp.csr_matrix(sum(_normalised(g) for g in graphs))
    n = graph.shape[0]
    affinity = _normalised(graph)  # normalised adjacency, eigenvalues <= 1
    n_vec = min(bits + 1, n - 2)
    v0 = np.random.default_rng(seed).normal(size=n)  # fixed start vector: deterministic result
    values, vectors = eigsh(affinity, k=n_vec, which="LA", v0=v0)
    order = np.argsort(-values)[1:]  # drop the trivial top eigenvector (the degree vector)
    emb = vectors[:, order] * np.sqrt(n) * np.abs(values[order]) ** DIFFUSION_TIME
    if emb.shape[1] < bits:  # tiny graphs: pad with random directions
        pad = np.random.default_rng(seed).normal(size=(n, bits - emb.shape[1]))
        emb = np.concatenate([emb, pad], axis=1)
    emb = emb - emb.mean(0)
    rotation = np.linalg.qr(np.random.default_rng(seed).normal(size=(bits, bits)))[0]
    for _ in range(itq_iterations):  # ITQ (Gong & Lazebnik): alternate codes and rotation
        b = np.sign(emb @ rotation)
        u, _, vt = np.linalg.svd(b.T @ emb)
        rotation = (u @ vt).T
    return (emb @ rotation > 0).astype(np.float32)


def is_short_text(counts: Matrix, config: TrainConfig) -> bool:
    """Whether the median training document has at most ``config.lsa_graph_max_terms`` distinct
    terms: then few pairs of documents on one topic share a term, and the term-overlap graphs
    need the LSA one beside them."""
    distinct = np.asarray((sp.csr_matrix(counts) != 0).sum(axis=1)).ravel()
    return bool(np.median(distinct) <= config.lsa_graph_max_terms)


def neighbour_lists(
    items: Any, featurizer: Featurizer, x: Matrix, counts: Matrix, config: TrainConfig, device: str
) -> list[np.ndarray]:
    """The training items' k-NN lists (n, k), one per view: the network's input features (tf-idf,
    or an image's pixels) first, then for word counts BM25 weights and corpus word vectors
    (`training.word_vectors`). Empty when ``config.neighbours`` is 0.

    items: the training split as given; x: the network's inputs; counts: the featurizer's targets.
    """
    if config.neighbours == 0:
        return []
    graph_x, graph_counts = x, counts
    # neighbours are judged on a richer vocabulary than the network reads (training only)
    if isinstance(featurizer, TextFeaturizer) and config.neighbour_vocab_size > config.vocab_size:
        texts = [str(t) for t in items]
        rich = TextFeaturizer.fit(texts, vocab_size=config.neighbour_vocab_size)
        graph_counts = rich.counts(texts)
        graph_x = rich.inputs_from_targets(graph_counts)
    elif isinstance(featurizer, CountVectorFeaturizer):
        counts_featurizer = CountVectorFeaturizer.fit(items, config.neighbour_vocab_size)
        graph_counts = counts_featurizer.targets(items)
        graph_x = counts_featurizer.inputs_from_targets(graph_counts)
    elif isinstance(featurizer, ImageFeaturizer):
        graph_x = featurizer.pixels(x)
    documents = isinstance(featurizer, TextFeaturizer | CountVectorFeaturizer)
    k, exact_rows = config.neighbours, config.exact_knn_rows_for(documents)
    knns = [nearest_neighbours(graph_x, k, device, exact_rows=exact_rows)]
    if isinstance(featurizer, ImageFeaturizer):
        if config.gradient_graph and has_gradient_cells(featurizer.shape):
            edges = featurizer.gradient_rows(x)
            knns.append(nearest_neighbours(edges, k, device, exact_rows=exact_rows))
        return knns
    if not documents:
        return knns
    if config.bm25_graph:
        knns.append(nearest_neighbours(bm25_rows(graph_counts), k, device, exact_rows=exact_rows))
    if config.word_vector_graph:
        sparse_counts = sp.csr_matrix(graph_counts)
        columns, vectors = ppmi_word_vectors(sparse_counts)
        idf = idf_of(sparse_counts).astype(np.float64)
        docs = document_vectors(sparse_counts, columns, vectors, idf)
        knns.append(nearest_neighbours(docs, k, device, exact_rows=exact_rows))
    if config.lsa_graph_dims > 0 and min(x.shape) > 2 and is_short_text(counts, config):
        lsa = lsa_rows(x, config.lsa_graph_dims, config.seed)
        knns.append(nearest_neighbours(lsa, k, device, exact_rows=exact_rows))
    return knns
