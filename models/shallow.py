"""Shallow (one hidden layer) feature learners for greedy layer-wise pretraining.

Each learner maps its input to sigmoid features of a given width and exposes the weights that seed
one encoder layer and its mirror decoder layer of the deep autoencoder:

- ``ShallowAutoencoder``: plain, denoising, sparse, contractive or dropout-regularised autoencoder
  (the variants of Goodfellow et al., ch. 14), selected by a ``LayerRegularisation``.
PSD and the RBM live in ``models.psd`` and ``models.rbm`` and share the ``FeatureLearner`` surface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch import nn

from models.likelihoods import mean_reconstruction, negative_log_likelihood
from models.regularisers import CORRUPTIONS, contractive_penalty, corrupt, sparse_penalty


class FeatureLearner(Protocol):
    def features(self, x: torch.Tensor) -> torch.Tensor: ...  # (B, out) in [0, 1]
    def encoder_weights(self) -> tuple[torch.Tensor, torch.Tensor]: ...  # W (out, in), b (out,)
    def decoder_weights(self) -> tuple[torch.Tensor, torch.Tensor]: ...  # W (in, out), b (in,)


@dataclass(frozen=True)
class LayerRegularisation:
    corruption: str = "none"  # none | masking | gaussian | salt_pepper (denoising AE)
    corruption_level: float = 0.0  # masking/salt-pepper rate, or Gaussian std
    sparse_weight: float = 0.0
    sparse_kind: str = "l1"  # l1 | kl
    sparse_target: float = 0.05
    contractive_weight: float = 0.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.corruption not in CORRUPTIONS:
            raise ValueError(f"corruption must be one of {CORRUPTIONS}, got {self.corruption!r}")
        if self.corruption_level < 0:
            raise ValueError(f"corruption_level must be >= 0, got {self.corruption_level}")
        if self.corruption in ("masking", "salt_pepper") and self.corruption_level >= 1:
            raise ValueError(f"corruption_level is a rate for {self.corruption}; use a value < 1")
        if self.sparse_kind not in ("l1", "kl"):
            raise ValueError(f"sparse_kind must be 'l1' or 'kl', got {self.sparse_kind!r}")
        if not 0.0 < self.sparse_target < 1.0:
            raise ValueError(f"sparse_target must be in (0, 1), got {self.sparse_target}")
        if self.sparse_weight < 0 or self.contractive_weight < 0:
            raise ValueError("sparse_weight and contractive_weight must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


class ShallowOutput(NamedTuple):
    recon: torch.Tensor  # (B, in) mean reconstruction
    hidden: torch.Tensor  # (B, out) sigmoid features of the (possibly corrupted) input
    loss: torch.Tensor | None


class ShallowAutoencoder(nn.Module):
    input_scale: torch.Tensor

    def __init__(
        self, in_dim: int, out_dim: int, likelihood: str, reg: LayerRegularisation | None = None
    ) -> None:
        super().__init__()
        self.encoder = nn.Linear(in_dim, out_dim)
        self.decoder = nn.Linear(out_dim, in_dim)
        self.likelihood = likelihood
        self.reg = reg or LayerRegularisation()
        self.drop = nn.Dropout(self.reg.dropout)
        # spread of each input feature: the contractive penalty's unit (ones: raw input units)
        self.register_buffer("input_scale", torch.ones(in_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.encoder(x))

    def forward(
        self,
        x: torch.Tensor,
        target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> ShallowOutput:
        reg = self.reg
        x_in = corrupt(x, reg.corruption, reg.corruption_level, generator) if self.training else x
        h = torch.sigmoid(self.encoder(x_in))  # (B, out)
        logits = self.decoder(self.drop(h))
        recon = mean_reconstruction(logits, self.likelihood)
        if target is None:
            return ShallowOutput(recon, h, None)
        # the denoising AE rebuilds the clean target from the corrupted input
        loss = negative_log_likelihood(logits, target, self.likelihood)
        if reg.sparse_weight > 0:
            loss = loss + reg.sparse_weight * sparse_penalty(h, reg.sparse_kind, reg.sparse_target)
        if reg.contractive_weight > 0:
            loss = loss + reg.contractive_weight * contractive_penalty(
                h, self.encoder.weight, self.input_scale
            )
        return ShallowOutput(recon, h, loss)

    def encoder_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.weight.detach(), self.encoder.bias.detach()

    def decoder_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decoder.weight.detach(), self.decoder.bias.detach()
