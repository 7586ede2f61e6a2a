"""A denoising autoencoder (Vincent et al., 2008; Goodfellow et al., 2016, ch. 14.5).

Trained on corrupted inputs x~ ~ C(x~ | x) to minimise -log p_decoder(x | f(x~)) under the data's
likelihood (see ``likelihoods``), it learns to map a corrupted item back towards the data manifold.
It is separate from the hashing autoencoder on purpose: that one squeezes an item into a few
dozen bits fitted to its neighbourhood, which cannot carry the detail a reconstruction needs.
Here the code is wide and continuous, and the hidden units are ReLUs, which train well from a
random start in a few epochs of Adam (no layer-wise pretraining). Word counts and real vectors
also get a path around the bottleneck (see ``Denoiser``).

Classes, in dependency order: DenoiserConfig, DenoiserOutput, Denoiser; then ``reconstruct``, the
array-in, array-out inference helper.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from models.autoencoder import linear_stack
from models.config_io import config_from_dict, config_to_dict
from models.likelihoods import LIKELIHOODS, mean_reconstruction, negative_log_likelihood


@dataclass(frozen=True)
class DenoiserConfig:
    input_dim: int
    hidden_dims: tuple[int, ...] = (512, 256)  # encoder widths; the decoder mirrors them
    likelihood: str = "bernoulli"  # bernoulli | gaussian | multinomial

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_dims", tuple(int(d) for d in self.hidden_dims))
        if self.input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {self.input_dim}")
        if not self.hidden_dims or any(d < 1 for d in self.hidden_dims):
            raise ValueError(
                f"hidden_dims must be one or more positive widths, got {list(self.hidden_dims)}"
            )
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")

    @property
    def layer_dims(self) -> tuple[int, ...]:
        """Widths from input to output, e.g. (784, 512, 256, 512, 784)."""
        return (self.input_dim, *self.hidden_dims, *self.hidden_dims[-2::-1], self.input_dim)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DenoiserConfig:
        return config_from_dict(cls, d, "denoiser config")


class DenoiserOutput(NamedTuple):
    recon: torch.Tensor  # (B, input_dim) mean of the output distribution
    loss: torch.Tensor | None  # scalar NLL of the target, when one is given


class Denoiser(nn.Module):
    def __init__(self, config: DenoiserConfig) -> None:
        super().__init__()
        self.config = config
        self.layers = linear_stack(config.layer_dims)
        # Paths around the bottleneck, so it only has to carry what the input lacks. Word counts:
        # a per-document gate mixes the input's own word shares with the decoder's distribution
        # (a copy mechanism; without it the narrow code blurs every document towards its topic).
        # Real vectors: a per-feature gain on the input (learned shrinkage).
        self.copy_gate = (
            nn.Linear(config.hidden_dims[-1], 1) if config.likelihood == "multinomial" else None
        )
        self.gain = (
            nn.Parameter(torch.zeros(config.input_dim)) if config.likelihood == "gaussian" else None
        )

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, input_dim) -> (B, input_dim) unnormalised outputs of the likelihood."""
        h, code = x, x
        for i, layer in enumerate(self.layers[:-1]):
            h = torch.relu(layer(h))  # (B, width)
            if i == len(self.config.hidden_dims) - 1:
                code = h  # (B, hidden_dims[-1]) the narrowest layer
        out = self.layers[-1](h)
        if self.gain is not None:
            return out + self.gain * x
        if self.copy_gate is not None:
            seen = x.clamp_min(0)
            shares = seen / seen.sum(-1, keepdim=True).clamp_min(1e-12)  # (B, input_dim)
            gate = torch.sigmoid(self.copy_gate(code))  # (B, 1)
            mix = gate * shares + (1 - gate) * torch.softmax(out, dim=-1)
            return torch.log(mix.clamp_min(1e-12))  # log-probabilities are logits of a softmax
        return out

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> DenoiserOutput:
        """x: (corrupted) inputs (B, input_dim); target: the clean item (B, input_dim)."""
        logits = self.logits(x)
        recon = mean_reconstruction(logits, self.config.likelihood)
        if target is None:
            return DenoiserOutput(recon, None)
        return DenoiserOutput(
            recon, negative_log_likelihood(logits, target, self.config.likelihood)
        )


@torch.no_grad()
def reconstruct(model: Denoiser, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """(n, input_dim) float inputs -> (n, input_dim) float32 mean reconstructions."""
    x = np.asarray(x, dtype=np.float32)
    want = model.config.input_dim
    if x.ndim != 2 or x.shape[1] != want:
        raise ValueError(f"expected an array of shape (n, {want}), got {x.shape}")
    device = next(model.parameters()).device
    model.eval()
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        xb = torch.from_numpy(x[start : start + batch_size]).to(device)
        out[start : start + len(xb)] = model(xb).recon.float().cpu().numpy()
    return out
