"""Fine-tuning of the unrolled deep autoencoder, with neighbour-based targets.

A plain reconstruction autoencoder spends its code on whatever explains the pixels or words, which
lands close to PCA-ITQ for retrieval. Following the neighbourhood line of semantic-hashing work
(e.g. SNUH, ACL 2021), fine-tuning here adds, inside the autoencoder framework:
- decoder targets that are the mean of an item and its k nearest neighbours (`training.neighbours`),
  so the code must describe what the item shares with its neighbourhood rather than its
  idiosyncrasies;
- target bits for the code units from the k-NN graph(s) (`training.neighbours.spectral_codes`):
  the encoder learns to emit them, the decoder to rebuild the neighbourhood from them;
- optionally, a pull of each item's code towards the code of one random neighbour per step;
- bit balance and decorrelation (in the model's loss), so no bit is wasted;
- fixed per-item Gaussian noise on the code units' inputs (Salakhutdinov & Hinton's deterministic
  noise), which drives the logistic code units to saturate so thresholding loses little.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp
import torch

from models.autoencoder import DeepBinaryAutoencoder
from training.config import TrainConfig
from training.pretrain import cosine_schedule, descend, minibatches, rows
from training.progress import EpochReporter

LOG = logging.getLogger(__name__)
Matrix: TypeAlias = np.ndarray | sp.csr_matrix
Progress = Callable[[dict[str, Any]], None]
# fine-tuning takes at least this many steps per epoch (smaller batches on small training sets):
# with 128-item batches TMC's 2,847 items gave 22 steps an epoch and p@100 0.657 at 32 bits
# (below PCA-ITQ's 0.712); 32-item batches gave 0.712, 40 epochs of 128 gave 0.714
MIN_STEPS_PER_EPOCH = 64
MIN_BATCH = 32  # the balance and decorrelation terms are batch statistics


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
