"""Predictive sparse decomposition (Kavukcuoglu, Ranzato & LeCun, 2008).

Objective per item: ||x - D h||^2 + lam * |h|_1 + gamma * ||h - f(x)||^2, with the predictor
f(x) = sigmoid(W x + b) so the learned encoder is a layer of the sigmoid stack. Training alternates:
(1) with the parameters fixed, infer h* by projected ISTA steps started at f(x) (h kept in [0, 1]
so it lives where the sigmoid predictor can reach it); (2) with h* fixed, take a gradient step on
D and on the predictor. Dictionary columns are renormalised to unit length so the L1 term cannot be
dodged by shrinking h and growing D.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


def _spectral_norm_sq(w: torch.Tensor, iterations: int = 20) -> float:
    """Largest eigenvalue of w^T w by power iteration (a full SVD per batch is too slow)."""
    v = torch.ones(w.shape[1], device=w.device, dtype=w.dtype) / w.shape[1] ** 0.5
    for _ in range(iterations):
        v = w.T @ (w @ v)
        v = v / v.norm().clamp_min(1e-12)
    return float((w @ v).pow(2).sum()) * 1.05  # small margin: power iteration underestimates


class PSDOutput(NamedTuple):
    code: torch.Tensor  # (B, out) inferred sparse code h*
    prediction: torch.Tensor  # (B, out) f(x)
    loss: torch.Tensor  # scalar, parameter-step objective at h*


class PredictiveSparseDecomposition(nn.Module):
    def __init__(
        self, in_dim: int, out_dim: int, sparsity: float = 0.1, prediction_weight: float = 1.0,
        inference_steps: int = 10,
    ) -> None:  # fmt: skip
        super().__init__()
        if sparsity < 0 or prediction_weight < 0 or inference_steps < 1:
            raise ValueError(
                "PSD needs sparsity >= 0, prediction_weight >= 0, inference_steps >= 1"
            )
        self.encoder = nn.Linear(in_dim, out_dim)  # predictor f
        self.decoder = nn.Linear(out_dim, in_dim)  # dictionary D (weight: in x out) plus bias
        self.sparsity, self.gamma, self.steps = sparsity, prediction_weight, inference_steps
        with torch.no_grad():
            self._normalise_dictionary()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.encoder(x))

    def _normalise_dictionary(self) -> None:
        w = self.decoder.weight  # (in, out): one atom per column
        w.div_(w.norm(dim=0, keepdim=True).clamp_min(1.0))

    def energy(self, x: torch.Tensor, h: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """The full PSD objective, mean over the batch."""
        rec = (x - self.decoder(h)).pow(2).sum(-1)
        return (
            rec + self.sparsity * h.abs().sum(-1) + self.gamma * (h - pred).pow(2).sum(-1)
        ).mean()

    @torch.no_grad()
    def infer(self, x: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """Projected ISTA on h for fixed parameters; x (B, in), pred (B, out) -> h* (B, out)."""
        d = self.decoder.weight  # (in, out)
        lipschitz = 2 * (_spectral_norm_sq(d) + self.gamma)
        eta = 1.0 / float(lipschitz)
        h = pred.clone()
        for _ in range(self.steps):
            resid = self.decoder(h) - x  # (B, in)
            grad = 2 * resid @ d + 2 * self.gamma * (h - pred)
            h = (h - eta * grad - eta * self.sparsity).clamp(0.0, 1.0)  # soft-threshold for h >= 0
        return h

    def forward(self, x: torch.Tensor) -> PSDOutput:
        pred = self.features(x)
        h = self.infer(x, pred.detach())
        rec = (x - self.decoder(h)).pow(2).sum(-1)
        loss = (rec + self.gamma * (h - pred).pow(2).sum(-1)).mean()
        return PSDOutput(h, pred, loss)

    def after_step(self) -> None:
        """Call after each optimiser step on the parameters."""
        with torch.no_grad():
            self._normalise_dictionary()

    def encoder_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.weight.detach(), self.encoder.bias.detach()

    def decoder_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder.weight.detach(), self.decoder.bias.detach()
