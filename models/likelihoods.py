"""Output distributions of the decoder, each as a negative log-likelihood on logits.

The decoder of the deep autoencoder emits unnormalised outputs ("logits"); the likelihood turns them
into a mean reconstruction and scores a target under that distribution:

- ``bernoulli``  : pixels in [0, 1]; NLL = binary cross-entropy summed over dimensions.
- ``gaussian``   : real vectors with unit variance; NLL = half the squared error (constant dropped).
- ``multinomial``: word counts; a softmax over the vocabulary whose NLL is weighted by the counts,
  i.e. the replicated-softmax / constrained-Poisson view of Salakhutdinov & Hinton where a document
  of length D is D draws from one distribution. We divide by D so long documents do not dominate a
  batch; the gradient direction per document is unchanged.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

Likelihood = Literal["bernoulli", "gaussian", "multinomial"]
LIKELIHOODS: tuple[str, ...] = ("bernoulli", "gaussian", "multinomial")


def mean_reconstruction(logits: torch.Tensor, likelihood: str) -> torch.Tensor:
    """The expected value of the output distribution (probabilities, means or word shares)."""
    if likelihood == "bernoulli":
        return torch.sigmoid(logits)
    if likelihood == "multinomial":
        return torch.softmax(logits, dim=-1)
    return logits


def negative_log_likelihood(
    logits: torch.Tensor, target: torch.Tensor, likelihood: str
) -> torch.Tensor:
    """Mean over the batch of the per-item NLL of ``target`` (batch, dim) under ``logits``."""
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)
    elif likelihood == "gaussian":
        nll = 0.5 * (logits - target).pow(2).sum(-1)
    elif likelihood == "multinomial":
        length = target.sum(-1).clamp_min(1e-8)  # (B,) document length
        nll = -(target * torch.log_softmax(logits, dim=-1)).sum(-1) / length
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}; choose one of {LIKELIHOODS}")
    return nll.mean()
