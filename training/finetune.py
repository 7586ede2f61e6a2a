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

import time
from typing import Any

import numpy as np
import torch

from models.autoencoder import DeepBinaryAutoencoder
from training import distributed
from training.config import TrainConfig
from training.loop import Batch, GradientStep, Matrix, batch_size_for, fit, rows, total_steps
from training.progress import Progress


class FinetuneLearner:
    """One fine-tuning step: the autoencoder's loss on a minibatch, with its items' code noise,
    code targets and (optionally) one random neighbour each, then Adam with cosine decay."""

    def __init__(
        self,
        model: DeepBinaryAutoencoder | torch.nn.Module,  # or it in DistributedDataParallel
        x: Matrix,
        knn: np.ndarray | None,
        code_targets: np.ndarray | None,
        noise: torch.Tensor,
        lr: float,
        steps: int,
        rng: np.random.Generator,
    ) -> None:
        self.model, self.x, self.knn, self.code_targets = model, x, knn, code_targets
        self.noise, self.steps, self.rng = noise, steps, rng
        self.descend = GradientStep(model.parameters(), lr, decay_steps=steps)

    def step(self, batch: Batch) -> float:
        idx, device = batch.idx, batch.device
        nb = None
        if self.knn is not None:
            column = self.rng.integers(0, self.knn.shape[1], size=batch.drawn)[batch.part]
            pick = self.knn[idx, column]
            nb = rows(self.x, pick, device)
        # the noise grows from 0 over the first half, so the code is informative before it is
        # pushed to binary values
        ramp = min(1.0, 2 * self.descend.taken / self.steps)
        eps = ramp * self.noise[idx].to(device)
        bits = None
        if self.code_targets is not None:
            bits = torch.from_numpy(self.code_targets[idx]).to(device)
        out = self.model(batch.x, batch.target, eps, nb, bits)
        return self.descend(out.loss)


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
    noise = torch.randn(n, model.config.n_bits, generator=gen)  # fixed per item, as in the paper
    if cfg.pretrain == "none":
        sample = rng.choice(n, size=min(n, 2048), replace=False)
        model.init_from_data(rows(x, np.sort(sample), device))
    use_neighbours = knn is not None and knn.shape[1] > 0 and model.config.neighbour_weight > 0
    batch_size = batch_size_for(n, cfg.batch_size)
    epochs = cfg.epochs_for(n, model.config.layer_dims)
    steps = total_steps(n, batch_size, epochs)
    learner = FinetuneLearner(distributed.wrap(model), x, knn if use_neighbours else None,
                              code_targets, noise, cfg.lr, steps, rng)  # fmt: skip
    model.train()
    history = fit(learner, x, target, epochs=epochs, batch_size=batch_size, rng=rng,
                  device=device, stage="fine-tune", progress=progress)  # fmt: skip
    model.eval()
    return {"epochs": epochs, "batch_size": batch_size,
            "loss_history": [round(h, 5) for h in history],
            "seconds": round(time.perf_counter() - started, 2)}  # fmt: skip
