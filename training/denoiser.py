"""Fit the denoising autoencoder that `TrainedModel.denoise` uses (models/denoiser.py).

Each training item is corrupted afresh every time it is seen, with a corruption drawn per item so
that one model covers what users send rather than one noise level:
- pixels (images, values in [0, 1]): additive Gaussian noise then clipped to [0, 1], masking
  (pixels set to 0) or salt-and-pepper (pixels set to 0 or 1), one kind per item, its std or rate
  uniform in [0, denoiser_noise];
- words (text and word-count vectors, L2-normalised tf-idf inputs): word dropout, each term of the
  document removed with a rate uniform in [0, denoiser_noise], then the row renormalised, which
  is exactly the input the featuriser gives the shortened document;
- gaussian (real vectors, standardised per feature): additive Gaussian noise with a std uniform
  in [0, denoiser_noise] feature standard deviations.
The decoder scores the clean item under the hasher's likelihood (pixels, word counts, features).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from models.denoiser import Denoiser, DenoiserConfig
from models.regularisers import corrupt
from training import distributed
from training.config import TrainConfig
from training.loop import Batch, GradientStep, Matrix, batch_size_for, fit, total_steps
from training.progress import Progress

NOISE_FOR_FEATURES = {"image": "pixels", "text": "words", "counts": "words", "vector": "gaussian"}
SEED_OFFSET = 2000  # the denoiser's random streams differ from the hasher's


def corrupt_batch(
    x: torch.Tensor, noise: str, max_level: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A corrupted copy of the clean inputs x (B, dim), one random corruption per item."""
    b, dev = x.shape[0], x.device
    level = max_level * torch.rand((b, 1), generator=generator, device=dev)  # std or rate per item
    if noise == "gaussian":
        return corrupt(x, "gaussian", level, generator)
    if noise == "words":
        kept = corrupt(x, "masking", level, generator)
        scale = x.norm(dim=1, keepdim=True) / kept.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return kept * scale
    if noise == "pixels":
        gaussian = corrupt(x, "gaussian", level, generator).clamp(0, 1)
        masked = corrupt(x, "masking", level, generator)
        salt_pepper = corrupt(x, "salt_pepper", level, generator)
        kind = torch.randint(0, 3, (b, 1), generator=generator, device=dev)
        return torch.where(kind == 0, gaussian, torch.where(kind == 1, masked, salt_pepper))
    raise ValueError(
        f"unknown noise {noise!r}; choose one of {sorted(set(NOISE_FOR_FEATURES.values()))}"
    )


class DenoiserLearner:
    """One step: corrupt the clean minibatch afresh, score the clean items, Adam (cosine decay)."""

    def __init__(
        self, model: Denoiser | torch.nn.Module, noise: str, max_level: float, lr: float,
        steps: int, generator: torch.Generator,
    ) -> None:  # fmt: skip
        self.model, self.noise, self.max_level, self.generator = model, noise, max_level, generator
        self.descend = GradientStep(model.parameters(), lr, decay_steps=steps)

    def step(self, batch: Batch) -> float:
        noisy = corrupt_batch(batch.x, self.noise, self.max_level, self.generator)
        return self.descend(self.model(noisy, batch.target).loss)


def fit_denoiser(
    x: Matrix,
    target: Matrix,
    features: str,
    likelihood: str,
    cfg: TrainConfig,
    device: str,
    progress: Progress | None = None,
) -> tuple[Denoiser, dict[str, Any]]:
    """Train a denoiser from clean inputs x (n, input_dim) to rebuild ``target`` (n, input_dim)
    (the likelihood's clean target: pixels, word counts, standardised features).

    features: the featuriser's kind (image | text | counts | vector), which picks the corruption.
    Returns the fitted model (in eval mode) and its training metrics.
    """
    return DenoiserFit(x, target, features, likelihood, cfg, device, progress).run()


class DenoiserFit:
    """``fit_denoiser`` in two steps: set up (the subset drawn, the network initialised), then
    ``run``. After set-up it draws only from its own generators, so ``run`` may go on a thread
    of its own beside the hasher's training and trains the same network either way."""

    def __init__(
        self, x: Matrix, target: Matrix, features: str, likelihood: str, cfg: TrainConfig,
        device: str, progress: Progress | None = None,
    ) -> None:  # fmt: skip
        noise = NOISE_FOR_FEATURES.get(features)
        if noise is None:
            raise ValueError(
                f"no corruption for features {features!r}; expected {sorted(NOISE_FOR_FEATURES)}"
            )
        rng = np.random.default_rng(cfg.seed + SEED_OFFSET)
        n = x.shape[0]
        if n > cfg.denoiser_rows:  # a random subset bounds the training time on large sets
            keep = np.sort(rng.choice(n, cfg.denoiser_rows, replace=False))
            x, target = x[keep], target[keep]
        self.dcfg = DenoiserConfig(x.shape[1], cfg.denoiser_hidden, likelihood)
        with torch.random.fork_rng(devices=[]):  # initialise without moving the global stream
            torch.manual_seed(cfg.seed + SEED_OFFSET)
            self.model = Denoiser(self.dcfg).to(device)
        seed = distributed.rank_seed(cfg.seed + SEED_OFFSET)
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.x, self.target, self.noise, self.rng = x, target, noise, rng
        self.cfg, self.device, self.progress = cfg, device, progress

    def run(self) -> tuple[Denoiser, dict[str, Any]]:
        """Train; returns the fitted model (in eval mode) and its training metrics."""
        started = time.perf_counter()
        cfg, model, n = self.cfg, self.model, self.x.shape[0]
        batch_size = batch_size_for(n, cfg.denoiser_batch_size)
        steps = total_steps(n, batch_size, cfg.denoiser_epochs)
        net = distributed.wrap(model)  # DistributedDataParallel when data-parallel
        learner = DenoiserLearner(
            net, self.noise, cfg.denoiser_noise, cfg.denoiser_lr, steps, self.generator
        )
        model.train()
        history = fit(learner, self.x, self.target, epochs=cfg.denoiser_epochs,
                      batch_size=batch_size, rng=self.rng, device=self.device, stage="denoiser",
                      progress=self.progress)  # fmt: skip
        model.eval()
        metrics = {
            "layer_dims": list(self.dcfg.layer_dims),
            "noise": self.noise,
            "max_level": cfg.denoiser_noise,
            "rows": n,
            "epochs": cfg.denoiser_epochs,
            "batch_size": batch_size,
            "loss_history": [round(h, 5) for h in history],
            "seconds": round(time.perf_counter() - started, 2),
        }
        return model, metrics
