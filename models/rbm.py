"""Restricted Boltzmann machine trained with one step of contrastive divergence (CD-1).

Hinton & Salakhutdinov (2006) pretrained each layer of their deep autoencoders as an RBM.
Visible units are Bernoulli (inputs in [0, 1]), unit-variance Gaussian (real inputs) or
constrained Poisson (word counts: the bottom layer of Salakhutdinov & Hinton's semantic hashing,
where a document of length N is rebuilt as N * softmax(W^T h + b), the same distribution as the
deep autoencoder's multinomial decoder); hidden units are Bernoulli. Parameters are updated by hand
with momentum, as CD is not the gradient of a loss that autograd could give us.
"""

from __future__ import annotations

import torch
from torch import nn

VISIBLE_UNITS = ("bernoulli", "gaussian", "poisson")


class RBM(nn.Module):
    encoder_gain: torch.Tensor

    def __init__(
        self, n_visible: int, n_hidden: int, visible: str = "bernoulli", input_scale: float = 1.0
    ) -> None:
        super().__init__()
        if visible not in VISIBLE_UNITS:
            raise ValueError(f"visible must be one of {', '.join(VISIBLE_UNITS)}, got {visible!r}")
        if not input_scale > 0:
            raise ValueError(f"input_scale must be > 0, got {input_scale}")
        self.visible = visible
        # inputs are multiplied by this before they reach the units: it turns the network's
        # normalised tf-idf rows into pseudo word counts of about a document's length, the scale
        # the constrained Poisson units were made for (1 for the other unit types)
        self.input_scale = float(input_scale)
        self.weight = nn.Parameter(0.01 * torch.randn(n_hidden, n_visible))  # (hid, vis)
        self.hidden_bias = nn.Parameter(torch.zeros(n_hidden))
        self.visible_bias = nn.Parameter(torch.zeros(n_visible))
        self._velocity = [
            torch.zeros_like(p) for p in (self.weight, self.hidden_bias, self.visible_bias)
        ]
        # per hidden unit gain on the pre-activation when the RBM serves as an encoder layer
        # (`sharpen`); 1 while training, so CD sees the plain model
        self.register_buffer("encoder_gain", torch.ones(n_hidden))

    @torch.no_grad()
    def init_visible_bias(self, v: torch.Tensor) -> None:
        """Start the visible biases at the data's marginals (Hinton's RBM guide, sec. 8.1), so CD
        spends its few epochs on structure rather than on word or pixel frequencies.

        v (n, vis) unscaled inputs: Bernoulli units get log(p / (1 - p)) of each unit's mean,
        Gaussian units the mean, Poisson units the log of each word's share of all words.
        """
        mean = (v * self.input_scale).mean(0)
        if self.visible == "bernoulli":
            p = mean.clamp(1e-3, 1 - 1e-3)
            self.visible_bias.copy_(torch.log(p / (1 - p)))
        elif self.visible == "poisson":
            self.visible_bias.copy_(torch.log(mean / mean.sum().clamp_min(1e-12) + 1e-6))
        else:
            self.visible_bias.copy_(mean)

    def features(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self._hidden_input(v * self.input_scale) * self.encoder_gain)

    def _hidden_input(self, v: torch.Tensor) -> torch.Tensor:
        """Pre-activations (B, hid) of the hidden units for visible units v (already scaled)."""
        return v @ self.weight.T + self.hidden_bias

    @torch.no_grad()
    def sharpen(self, v: torch.Tensor, target_std: float = 1.0) -> None:
        """Rescale each hidden unit's pre-activation to spread ``target_std`` on the sample
        v (n, vis), keeping its direction and threshold (the sign of every pre-activation).

        A few CD-1 epochs leave weights so small that every hidden unit sits near 1/2 for every
        item: stacked, such layers hand fine-tuning a constant code, every bit dead.
        """
        std = self._hidden_input(v * self.input_scale).std(0)  # (hid,)
        self.encoder_gain.copy_(target_std / std.clamp_min(1e-6))

    def visible_mean(self, h: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the visible units given hidden states h (B, hid); ``length`` (B, 1) is each
        document's word count, needed by constrained Poisson units."""
        act = h @ self.weight + self.visible_bias  # (B, vis)
        if self.visible == "bernoulli":
            return torch.sigmoid(act)
        if self.visible == "poisson":
            assert length is not None, "constrained Poisson units need the document lengths"
            return length * torch.softmax(act, dim=-1)
        return act

    @torch.no_grad()
    def cd1_step(
        self, v0: torch.Tensor, lr: float, momentum: float = 0.5, weight_decay: float = 2e-4,
        generator: torch.Generator | None = None,
    ) -> float:  # fmt: skip
        """One CD-1 update on batch v0 (B, vis) of unscaled inputs; returns the reconstruction
        error: mean squared error, or for Poisson units the per-word cross-entropy in nats."""
        v0 = v0 * self.input_scale
        length = v0.sum(-1, keepdim=True)  # (B, 1); constant along the chain for Poisson units
        h0 = torch.sigmoid(self._hidden_input(v0))
        h_sample = (torch.rand(h0.shape, generator=generator, device=v0.device) < h0).to(v0.dtype)
        v1 = self.visible_mean(h_sample, length)  # mean-field reconstruction, as in Hinton's code
        h1 = torch.sigmoid(self._hidden_input(v1))
        n = v0.shape[0]
        grads = (
            (h0.T @ v0 - h1.T @ v1) / n - weight_decay * self.weight,
            (h0 - h1).mean(0),
            (v0 - v1).mean(0),
        )
        params = (self.weight, self.hidden_bias, self.visible_bias)
        for p, vel, g in zip(params, self._velocity, grads, strict=True):
            vel.mul_(momentum).add_(lr * g.to(vel.device))
            p.add_(vel)
        if self.visible == "poisson":
            log_shares = (v1 / length.clamp_min(1e-12)).clamp_min(1e-12).log()
            nll = -(v0 * log_shares).sum(-1) / length.squeeze(-1).clamp_min(1e-12)
            return float(nll.mean())
        return float((v0 - v1).pow(2).sum(-1).mean())

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        # keep the momentum buffers on the same device as the parameters
        out = super()._apply(fn, recurse)
        self._velocity = [fn(v) for v in self._velocity]
        return out

    def encoder_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        gain = self.encoder_gain[:, None] * self.input_scale
        return (self.weight * gain).detach(), (self.hidden_bias * self.encoder_gain).detach()

    def decoder_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight.detach().T.contiguous(), self.visible_bias.detach()
