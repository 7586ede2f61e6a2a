"""The deep binary-code autoencoder of semantic hashing (Salakhutdinov & Hinton, 2009).

Encoder: input -> sigmoid hidden layers -> logistic code units (n_bits). Decoder: the mirror image,
ending in logits scored by the data's likelihood (see ``likelihoods``). During fine-tuning the code
units are pushed towards binary values, either with deterministic Gaussian noise added to their
inputs (the noise for each training item is fixed in advance, as in the paper) or with a
straight-through estimator. The hash is the code thresholded at 1/2.

Classes, in dependency order: AutoencoderConfig, AEOutput, DeepBinaryAutoencoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from models.code_width import CODE_WIDTHS
from models.config_io import config_from_dict, config_to_dict
from models.likelihoods import LIKELIHOODS, mean_reconstruction, negative_log_likelihood
from models.regularisers import bit_balance, bit_decorrelation, sparse_penalty


@dataclass(frozen=True)
class AutoencoderConfig:
    input_dim: int
    hidden_dims: tuple[int, ...] = (500, 500)
    n_bits: int = 32  # see models.code_width
    likelihood: str = "bernoulli"  # bernoulli | gaussian | multinomial
    dropout: float = 0.0  # on hidden layers, fine-tuning only
    code_noise: float = 4.0  # std of the noise added to the code units' inputs when training
    straight_through: bool = False  # binarise the code in the forward pass, identity gradient
    sparse_weight: float = 0.0  # sparsity penalty on hidden activations
    sparse_kind: str = "l1"  # l1 | kl
    sparse_target: float = 0.05  # target firing rate for kl
    balance_weight: float = 0.0  # keeps each bit on for half the items
    decorrelation_weight: float = 0.0  # keeps bits uncorrelated
    neighbour_weight: float = 0.0  # pulls an item's code towards its neighbours' codes
    code_target_weight: float = 0.0  # cross-entropy of the code units against target bits

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_dims", tuple(int(d) for d in self.hidden_dims))
        if self.input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {self.input_dim}")
        problem = CODE_WIDTHS.problem(self.n_bits)
        if problem is not None:
            raise ValueError(f"n_{problem}")
        if any(d < 1 for d in self.hidden_dims):
            raise ValueError(f"hidden_dims must all be >= 1, got {self.hidden_dims}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.sparse_kind not in ("l1", "kl"):
            raise ValueError(f"sparse_kind must be 'l1' or 'kl', got {self.sparse_kind!r}")
        if not 0.0 < self.sparse_target < 1.0:
            raise ValueError(f"sparse_target must be in (0, 1), got {self.sparse_target}")
        for name in ("code_noise", "sparse_weight", "balance_weight", "decorrelation_weight",
                     "neighbour_weight", "code_target_weight"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def layer_dims(self) -> tuple[int, ...]:
        """Widths from input to code, e.g. (2000, 500, 500, 32)."""
        return (self.input_dim, *self.hidden_dims, self.n_bits)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoencoderConfig:
        return config_from_dict(cls, d, "autoencoder config")


def neighbour_contrast(p: torch.Tensor, p_nb: torch.Tensor) -> torch.Tensor:
    """Squared code distance to a neighbour relative to the distance to other batch items.

    p, p_nb : (B, bits). A ratio, not a plain distance: pulling neighbours together alone is
    solved by giving every item the same code; dividing by the typical distance between unrelated
    items rules that out (the Laplacian-eigenmap objective of spectral hashing, made scale-free).
    """
    near = (p - p_nb).pow(2).sum(-1).mean()
    far = (p - p.roll(1, dims=0)).pow(2).sum(-1).mean()  # batch order is random
    return near / far.clamp_min(1e-6)


def linear_stack(dims: tuple[int, ...]) -> nn.ModuleList:
    """Linear layers from dims[0] to dims[1], dims[1] to dims[2], ... (the activations are the
    caller's)."""
    return nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))


@torch.no_grad()
def data_dependent_init(layer: nn.Linear, x: torch.Tensor, target_std: float = 1.0) -> torch.Tensor:
    """Rescale ``layer`` so its pre-activations on the sample x (n, in) have zero mean and std
    ``target_std`` per unit; returns sigmoid(layer(x)). Sparse, L2-normalised inputs (tf-idf) give
    default-initialised sigmoid units almost constant activations, which stalls learning.
    """
    pre = layer(x)  # (n, out)
    std = pre.std(0).clamp_min(1e-8)
    layer.weight.mul_((target_std / std)[:, None])
    layer.bias.copy_(-(pre.mean(0) - layer.bias) * target_std / std)
    return torch.sigmoid(layer(x))


class AEOutput(NamedTuple):
    recon: torch.Tensor  # (B, input_dim) mean of the output distribution
    code_logits: torch.Tensor  # (B, n_bits) inputs of the code units, before any noise
    code_probs: torch.Tensor  # (B, n_bits) logistic code activations (noisy when training)
    loss: torch.Tensor | None  # scalar, when a target is given


class DeepBinaryAutoencoder(nn.Module):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = linear_stack(config.layer_dims)
        self.decoder = linear_stack(config.layer_dims[::-1])
        self.drop = nn.Dropout(config.dropout)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation of every encoder layer from a sample x (n, input_dim)."""
        h = x
        for layer in self.encoder:
            assert isinstance(layer, nn.Linear)
            h = data_dependent_init(layer, h)

    def encode_layers(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Hidden activations of every encoder layer but the last, and the code logits."""
        return self.encode_from_first(self.encoder[0](x))

    def encode_from_first(self, first: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``encode_layers`` given the first layer's output x W^T + b, which sparse rows get
        far more cheaply than through a dense copy (models/hasher.py)."""
        hidden: list[torch.Tensor] = []
        h = first
        for layer in self.encoder[1:]:
            h = self.drop(torch.sigmoid(h))  # (B, width)
            hidden.append(h)
            h = layer(h)
        return hidden, h  # code logits (B, n_bits)

    def code(self, logits: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Code activations fed to the decoder: noisy/binarised while training, plain otherwise."""
        if self.training and noise is not None and self.config.code_noise > 0:
            logits = logits + self.config.code_noise * noise
        p = torch.sigmoid(logits)
        if self.training and self.config.straight_through:
            hard = (p > 0.5).to(p.dtype)
            p = hard + p - p.detach()  # forward: binary; backward: identity through the sigmoid
        return p

    def decode_logits(self, code: torch.Tensor) -> torch.Tensor:
        h = code
        for layer in self.decoder[:-1]:
            h = self.drop(torch.sigmoid(layer(h)))
        return self.decoder[-1](h)  # (B, input_dim) logits

    def forward(
        self,
        x: torch.Tensor,
        target: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        neighbour: torch.Tensor | None = None,
        code_target: torch.Tensor | None = None,
    ) -> AEOutput:
        """x (B, input_dim) -> AEOutput; the loss needs ``target`` (B, input_dim).

        noise: (B, n_bits) standard normal draws fixed per item; neighbour: (B, input_dim) inputs
        of one neighbour of each item, whose code this item's code is pulled towards;
        code_target: (B, n_bits) bits in {0, 1} the code units should fire (e.g. spectral codes).
        """
        cfg = self.config
        hidden, logits = self.encode_layers(x)
        p = self.code(logits, noise)
        out_logits = self.decode_logits(p)
        recon = mean_reconstruction(out_logits, cfg.likelihood)
        if target is None:
            return AEOutput(recon, logits, p, None)
        loss = negative_log_likelihood(out_logits, target, cfg.likelihood)
        clean = torch.sigmoid(logits)  # regularisers act on the noise-free code
        if cfg.sparse_weight > 0 and hidden:
            penalties = [sparse_penalty(h, cfg.sparse_kind, cfg.sparse_target) for h in hidden]
            loss = loss + cfg.sparse_weight * torch.stack(penalties).sum()
        if cfg.balance_weight > 0:
            loss = loss + cfg.balance_weight * bit_balance(clean)
        if cfg.decorrelation_weight > 0:
            loss = loss + cfg.decorrelation_weight * bit_decorrelation(clean)
        if cfg.neighbour_weight > 0 and neighbour is not None:
            _, nb_logits = self.encode_layers(neighbour)
            loss = loss + cfg.neighbour_weight * neighbour_contrast(clean, torch.sigmoid(nb_logits))
        if cfg.code_target_weight > 0 and code_target is not None:
            bce = F.binary_cross_entropy_with_logits(logits, code_target, reduction="none")
            loss = loss + cfg.code_target_weight * bce.sum(-1).mean()
        return AEOutput(recon, logits, p, loss)
