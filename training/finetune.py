"""Fine-tuning of the unrolled deep autoencoder, with neighbour-based targets.

A plain reconstruction autoencoder spends its code on whatever explains the pixels or words, which
lands close to PCA-ITQ for retrieval. Following the neighbourhood line of semantic-hashing work
(e.g. SNUH, ACL 2021), fine-tuning here adds, inside the autoencoder framework:
- decoder targets that are the mean of an item and its k nearest neighbours in the input feature
  space (cosine similarity, training split only), so the code must describe what the item shares
  with its neighbourhood rather than its idiosyncrasies;
- target bits for the code units from the k-NN graph: the graph's leading non-trivial
  eigenvectors (a Laplacian eigenmap, as in spectral hashing / self-taught hashing) scaled by
  their eigenvalues squared (diffusion-map coordinates), rotated by ITQ to lose least when
  thresholded; the encoder learns to emit them, the decoder to rebuild the neighbourhood from them.
  Word counts get two graphs, under tf-idf and under BM25 weights, summed after normalisation:
  the two weightings disagree on many neighbours and their union is the better guide;
- optionally, a pull of each item's code towards the code of one random neighbour per step;
- bit balance and decorrelation (in the model's loss), so no bit is wasted;
- fixed per-item Gaussian noise on the code units' inputs (Salakhutdinov & Hinton's deterministic
  noise), which drives the logistic code units to saturate so thresholding loses little.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import eigsh

from models.autoencoder import DeepBinaryAutoencoder
from training.config import TrainConfig
from training.pretrain import cosine_schedule, descend, minibatches, rows
from training.progress import EpochReporter

LOG = logging.getLogger(__name__)
Matrix: TypeAlias = np.ndarray | sp.csr_matrix
Progress = Callable[[dict[str, Any]], None]
_KNN_DIM = 64  # dense inputs are projected on their top principal axes before the k-NN search
# fine-tuning takes at least this many steps per epoch (smaller batches on small training sets):
# with 128-item batches TMC's 2,847 items gave 22 steps an epoch and p@100 0.657 at 32 bits
# (below PCA-ITQ's 0.712); 32-item batches gave 0.712, 40 epochs of 128 gave 0.714
MIN_STEPS_PER_EPOCH = 64
MIN_BATCH = 32  # the balance and decorrelation terms are batch statistics
# spectral embedding weighted by eigenvalue**t (diffusion-map coordinates, t = 2) before ITQ, so
# the smoother leading eigenvectors weigh more in the rotation; on the 10k tf-idf k-NN graph the
# target codes' own p@100 at 32 bits went 0.729 -> 0.742 (TMC) and 0.472 -> 0.480 (20NG, k=50)
DIFFUSION_TIME = 2


def _cosine_blocks(x: Matrix, device: str) -> Callable[[int, int], torch.Tensor]:
    """A function giving the cosine similarities of rows a..b against all rows, (b - a, n)."""
    if sp.issparse(x):
        xs = sp.csr_matrix(x, dtype=np.float32)
        norms = np.sqrt(np.asarray(xs.multiply(xs).sum(1)).ravel())
        xs = sp.csr_matrix(sp.diags(1 / np.maximum(norms, 1e-12)) @ xs)
        xt = xs.T.tocsr()

        def sparse_sims(a: int, b: int) -> torch.Tensor:
            return torch.from_numpy((xs[a:b] @ xt).toarray()).to(device)

        return sparse_sims
    dense = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    if dense.shape[1] > _KNN_DIM:
        centred = dense - dense.mean(0)
        _, _, v = torch.pca_lowrank(centred, q=_KNN_DIM, center=False, niter=3)
        dense = centred @ v  # (n, 64) principal components
    dense = dense / dense.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def dense_sims(a: int, b: int) -> torch.Tensor:
        return dense[a:b] @ dense.T

    return dense_sims


def nearest_neighbours(x: Matrix, k: int, device: str = "cpu", block: int = 1024) -> np.ndarray:
    """Indices (n, k) of each row's k most cosine-similar other rows; exact, blockwise."""
    n = x.shape[0]
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), dtype=np.int64)
    sims_of = _cosine_blocks(x, device)
    out = np.empty((n, k), dtype=np.int64)
    for a in range(0, n, block):
        b = min(a + block, n)
        sims = sims_of(a, b)  # (b - a, n)
        sims[torch.arange(b - a), torch.arange(a, b)] = -math.inf  # never your own neighbour
        out[a:b] = sims.topk(k, dim=1).indices.cpu().numpy()
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


def finetune_batch_size(n: int, batch_size: int) -> int:
    """The configured batch size, shrunk so an epoch has MIN_STEPS_PER_EPOCH steps (not < 32)."""
    return max(1, min(batch_size, max(MIN_BATCH, n // MIN_STEPS_PER_EPOCH)))


def finetune(
    model: DeepBinaryAutoencoder,
    x: Matrix,
    target: Matrix,
    knn: np.ndarray | None,
    cfg: TrainConfig,
    device: str,
    progress: Progress | None = None,
    code_targets: np.ndarray | None = None,
) -> dict[str, Any]:
    """Train the whole autoencoder end to end; x (n, input_dim) inputs, target (n, input_dim),
    knn (n, k) neighbour indices, code_targets (n, n_bits) bits for the code units."""
    started = time.perf_counter()
    n = x.shape[0]
    rng = np.random.default_rng(cfg.seed + 1000)
    gen = torch.Generator().manual_seed(cfg.seed + 1000)
    noise = torch.randn(
        n, model.config.n_bits, generator=gen
    )  # fixed for each item, as in the paper
    if cfg.pretrain == "none":
        sample = rng.choice(n, size=min(n, 2048), replace=False)
        model.init_from_data(rows(x, np.sort(sample), device))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    batch_size = finetune_batch_size(n, cfg.batch_size)
    steps = max(1, cfg.epochs * math.ceil(n / batch_size))
    sched = cosine_schedule(opt, steps)
    use_neighbours = knn is not None and knn.shape[1] > 0 and model.config.neighbour_weight > 0
    history: list[float] = []
    reporter = EpochReporter(progress, "fine-tune", cfg.epochs, math.ceil(n / batch_size))
    model.train()
    for epoch in range(cfg.epochs):
        reporter.start_epoch()
        for idx in minibatches(n, batch_size, rng):
            nb = None
            if use_neighbours:
                assert knn is not None
                pick = knn[idx, rng.integers(0, knn.shape[1], size=len(idx))]
                nb = rows(x, pick, device)
            # the noise grows from 0 over the first half, so the code is informative before it
            # is pushed to binary values
            ramp = min(1.0, 2 * sched.last_epoch / steps)
            eps = ramp * noise[idx].to(device)
            bits = None if code_targets is None else torch.from_numpy(code_targets[idx]).to(device)
            out = model(rows(x, idx, device), rows(target, idx, device), eps, nb, bits)
            reporter.step(epoch, descend(opt, out.loss, sched), len(idx))
        history.append(round(reporter.end_epoch(epoch), 5))
        LOG.info("fine-tune epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs, history[-1])
    model.eval()
    seconds = time.perf_counter() - started
    return {"epochs": cfg.epochs, "batch_size": batch_size, "loss_history": history,
            "seconds": round(seconds, 2)}  # fmt: skip
