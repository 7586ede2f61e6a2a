"""Regularisers of the autoencoder family (Goodfellow et al., ch. 14) as plain functions.

- ``corrupt``: the denoising autoencoder's corruption process C(x~ | x): masking noise, additive
  Gaussian noise, or salt-and-pepper noise.
- ``sparse_penalty``: L1 on the hidden activations, or KL(rho || mean activation) to a target rate.
- ``contractive_penalty``: ||df/dx||_F^2 for a sigmoid layer h = sigmoid(W x + b), computed exactly:
  dh_j/dx_i = h_j (1 - h_j) W_ji, so the squared Frobenius norm is sum_j (h_j(1-h_j))^2 ||W_j||^2;
  optionally with x measured in units of each feature's spread.
- ``bit_balance`` and ``bit_decorrelation``: keep every code bit used about half the time and the
  bits uncorrelated, so a short code spends all its capacity (as in spectral hashing / SNUH).
"""

from __future__ import annotations

from typing import Literal

import torch

Corruption = Literal["none", "masking", "gaussian", "salt_pepper"]
CORRUPTIONS: tuple[str, ...] = ("none", "masking", "gaussian", "salt_pepper")
SparsityKind = Literal["l1", "kl"]


def corrupt(
    x: torch.Tensor,
    kind: str,
    level: float | torch.Tensor,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return a corrupted copy of ``x`` (batch, dim); ``level`` is a rate or a noise std, one for
    the batch or one per item as a (batch, 1) tensor."""
    if kind == "none" or (not isinstance(level, torch.Tensor) and level <= 0):
        return x
    shape, dev = x.shape, x.device
    if kind == "masking":
        keep = torch.rand(shape, generator=generator, device=dev) >= level
        return x * keep
    if kind == "gaussian":
        return x + level * torch.randn(shape, generator=generator, device=dev)
    if kind == "salt_pepper":
        hit = torch.rand(shape, generator=generator, device=dev) < level
        salt = (torch.rand(shape, generator=generator, device=dev) < 0.5).to(x.dtype)
        low, high = x.min().detach(), x.max().detach()  # salt/pepper = the data's own extremes
        return torch.where(hit, low + salt * (high - low), x)
    raise ValueError(f"unknown corruption {kind!r}; choose one of {CORRUPTIONS}")


def sparse_penalty(h: torch.Tensor, kind: str = "l1", target_rate: float = 0.05) -> torch.Tensor:
    """Sparsity penalty on activations ``h`` in [0, 1] of shape (batch, units)."""
    if kind == "l1":
        return h.abs().sum(-1).mean()
    if kind == "kl":
        rho = torch.tensor(target_rate, device=h.device, dtype=h.dtype)
        rho_hat = h.mean(0).clamp(1e-6, 1 - 1e-6)  # (units,) mean activation over the batch
        kl = rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))
        return kl.sum()
    raise ValueError(f"unknown sparsity {kind!r}; choose 'l1' or 'kl'")


def contractive_penalty(
    h: torch.Tensor, weight: torch.Tensor, input_scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Exact ||J||_F^2 of h = sigmoid(W x + b), averaged over the batch.

    h : (batch, out) sigmoid activations; weight : (out, in) as in ``nn.Linear``.
    input_scale : (in,) spread of each input feature; given, the Jacobian is taken with respect to
    the input in those units, J diag(input_scale), so one weight means the same contraction for
    pixels, tf-idf and hidden features, whose spreads differ by orders of magnitude.
    """
    slope = (h * (1 - h)).pow(2)  # (batch, out)
    w2 = weight.pow(2) if input_scale is None else weight.pow(2) * input_scale.pow(2)
    row_norms = w2.sum(1)  # (out,)
    return (slope * row_norms).sum(-1).mean()


def sigmoid_jacobian_norm(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    """Mean squared Frobenius norm of d sigmoid(layer(x)) / dx, for tests and monitoring."""
    h = torch.sigmoid(layer(x))
    return contractive_penalty(h, layer.weight)


def bit_balance(p: torch.Tensor) -> torch.Tensor:
    """Sum over bits of (mean firing rate - 1/2)^2 * 4, in [0, bits]; p : (batch, bits)."""
    return 4 * (p.mean(0) - 0.5).pow(2).sum()


def bit_decorrelation(p: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal correlation of the +-1 codes; p : (batch, bits)."""
    s = 2 * p - 1
    s = s - s.mean(0)
    cov = s.T @ s / max(p.shape[0] - 1, 1)  # (bits, bits)
    std = cov.diagonal().clamp_min(1e-6).sqrt()
    corr = cov / (std[:, None] * std[None, :])
    off = corr - torch.diag(corr.diagonal())
    bits = p.shape[1]
    return off.pow(2).sum() / max(bits * (bits - 1), 1)
