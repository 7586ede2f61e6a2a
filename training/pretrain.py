"""Greedy layer-wise pretraining (Hinton & Salakhutdinov, 2006; Bengio et al., 2007).

Each encoder layer of the deep autoencoder is first learned as a shallow feature learner trained on
the previous layer's features (the data itself for the first layer); its weights then seed that
encoder layer and the mirror decoder layer, and fine-tuning adjusts the whole unrolled stack.
The shallow learner is chosen by `TrainConfig.pretrain`: a plain, denoising, contractive or sparse
autoencoder, PSD, or an RBM trained with CD-1. Each is a `LayerLearner`: the training loop
(`training.loop.fit`) calls its step, and pretraining reads the trained layer it hands back.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from models.autoencoder import DeepBinaryAutoencoder, data_dependent_init
from models.psd import PredictiveSparseDecomposition
from models.rbm import RBM
from models.shallow import FeatureLearner, LayerRegularisation, ShallowAutoencoder
from training import distributed
from training.config import TrainConfig
from training.loop import Batch, GradientStep, Matrix, fit, rows
from training.progress import Progress

LOG = logging.getLogger(__name__)
# CD step of constrained Poisson units relative to `rbm_lr`: the full step leaves units stuck off
POISSON_LR_FACTOR = 1 / 3


class LayerLearner(Protocol):
    def step(self, batch: Batch) -> float: ...
    def trained(self) -> FeatureLearner: ...  # the finished layer, in eval mode


class AutoencoderLayer:
    """A shallow autoencoder trained by Adam on its reconstruction loss (plus its regulariser)."""

    def __init__(
        self, model: ShallowAutoencoder, sample: torch.Tensor, lr: float,
        generator: torch.Generator,
    ) -> None:  # fmt: skip
        data_dependent_init(model.encoder, sample)
        model.input_scale.copy_(sample.std(0))
        self.model, self.generator = model, generator
        self.net = distributed.wrap(model)  # after the initialisation, which it copies to all ranks
        self.descend = GradientStep(model.parameters(), lr)

    def step(self, batch: Batch) -> float:
        return self.descend(self.net(batch.x, batch.target, generator=self.generator).loss)

    def trained(self) -> FeatureLearner:
        return self.model.eval()


class PSDLayer:
    """PSD: sparse inference then an Adam step on the dictionary and predictor, renormalised."""

    def __init__(
        self, model: PredictiveSparseDecomposition, sample: torch.Tensor, lr: float
    ) -> None:  # fmt: skip
        data_dependent_init(model.encoder, sample)
        self.model = model
        self.net = distributed.wrap(model)
        self.descend = GradientStep(model.parameters(), lr)

    def step(self, batch: Batch) -> float:
        loss = self.descend(self.net(batch.x).loss)
        self.model.after_step()
        return loss

    def trained(self) -> FeatureLearner:
        return self.model.eval()


class RBMLayer:
    """An RBM trained with CD-1, momentum 0.5 in the first epoch and 0.9 after (Hinton's guide);
    its hidden units are rescaled on the data sample once trained (`RBM.sharpen`)."""

    def __init__(
        self, model: RBM, sample: torch.Tensor, lr: float, generator: torch.Generator
    ) -> None:  # fmt: skip
        model.init_visible_bias(sample)  # small random weights are part of CD's recipe, biases not
        self.model, self.sample, self.lr, self.generator = model, sample, lr, generator
        distributed.broadcast_(self._state())

    def step(self, batch: Batch) -> float:
        momentum = 0.5 if batch.epoch == 0 else 0.9
        error = self.model.cd1_step(batch.x, self.lr, momentum=momentum, generator=self.generator)
        distributed.average_(self._state())  # data-parallel: the mean of the ranks' updates
        return error

    def _state(self) -> list[torch.Tensor]:
        return [*self.model.parameters(), *self.model._velocity]

    def trained(self) -> FeatureLearner:
        self.model.sharpen(self.sample)
        return self.model.eval()


def layer_regularisation(cfg: TrainConfig) -> LayerRegularisation:
    """The shallow autoencoder variant that `cfg.pretrain` names."""
    mode = cfg.pretrain
    return LayerRegularisation(
        corruption=cfg.corruption if mode == "denoising" else "none",
        corruption_level=cfg.corruption_level if mode == "denoising" else 0.0,
        sparse_weight=cfg.sparse_weight if mode == "sparse" else 0.0,
        sparse_kind="kl",
        sparse_target=cfg.sparse_target,
        contractive_weight=cfg.contractive_weight if mode == "contractive" else 0.0,
    )


def pretrain_layer(
    x: Matrix,
    target: Matrix,
    out_dim: int,
    likelihood: str,
    cfg: TrainConfig,
    device: str,
    layer: int = 0,
    progress: Progress | None = None,
) -> FeatureLearner:
    """Train the learner `cfg.pretrain` names from x (n, in) to out_dim features; it rebuilds
    ``target``. Every learner starts from a sample of x's rows."""
    rng = np.random.default_rng(cfg.seed + layer)
    gen = torch.Generator(device=device).manual_seed(distributed.rank_seed(cfg.seed + layer))
    n, in_dim = x.shape
    sample = rows(x, np.sort(rng.choice(n, size=min(n, 2048), replace=False)), device)
    learner: LayerLearner
    if cfg.pretrain == "rbm":
        rbm, lr = rbm_for(x, target, out_dim, likelihood, cfg.rbm_lr)
        learner = RBMLayer(rbm.to(device), sample, lr, gen)
    elif cfg.pretrain == "psd":
        psd = PredictiveSparseDecomposition(in_dim, out_dim, sparsity=cfg.psd_sparsity)
        learner = PSDLayer(psd.to(device), sample, cfg.pretrain_lr)
    else:
        shallow = ShallowAutoencoder(in_dim, out_dim, likelihood, layer_regularisation(cfg))
        learner = AutoencoderLayer(shallow.to(device), sample, cfg.pretrain_lr, gen)
    fit(learner, x, target, epochs=cfg.pretrain_epochs, batch_size=cfg.batch_size, rng=rng,
        device=device, stage=f"pretrain layer {layer + 1}", progress=progress)  # fmt: skip
    return learner.trained()


@torch.no_grad()
def layer_features(
    learner: FeatureLearner, x: Matrix, device: str, batch: int = 2048
) -> np.ndarray:
    out = [learner.features(rows(x, np.arange(s, min(s + batch, x.shape[0])), device)).cpu().numpy()
           for s in range(0, x.shape[0], batch)]  # fmt: skip
    return np.concatenate(out).astype(np.float32)


def pretrain_stack(
    model: DeepBinaryAutoencoder,
    x: Matrix,
    target: Matrix,
    cfg: TrainConfig,
    device: str,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Pretrain every encoder layer greedily and copy the weights into ``model`` (in place).

    x: encoder inputs (n, input_dim); target: what the first layer's decoder rebuilds.
    Returns the mode, seconds taken and rows read, for the training metrics.
    """
    if cfg.pretrain == "none":
        return {"mode": "none", "seconds": 0.0}
    started = time.perf_counter()
    n = x.shape[0]
    if n > cfg.pretrain_rows:  # pretraining only has to find a good starting point
        keep = np.sort(np.random.default_rng(cfg.seed).choice(n, cfg.pretrain_rows, replace=False))
        x, target = x[keep], target[keep]
    dims = model.config.layer_dims
    n_layers = len(dims) - 1
    inputs: Matrix = x
    layer_target: Matrix = target
    for i in range(n_layers):
        likelihood = model.config.likelihood if i == 0 else "bernoulli"
        learner = pretrain_layer(
            inputs, layer_target, dims[i + 1], likelihood, cfg, device, i, progress
        )
        enc_w, enc_b = learner.encoder_weights()
        dec_w, dec_b = learner.decoder_weights()
        encoder_layer = model.encoder[i]
        mirror = model.decoder[n_layers - 1 - i]  # maps layer i+1's width back to layer i's
        assert isinstance(encoder_layer, nn.Linear) and isinstance(mirror, nn.Linear)
        with torch.no_grad():
            encoder_layer.weight.copy_(enc_w)
            encoder_layer.bias.copy_(enc_b)
            mirror.weight.copy_(dec_w)
            mirror.bias.copy_(dec_b)
        if i < n_layers - 1:
            inputs = layer_features(learner, inputs, device)
            layer_target = inputs
    seconds = time.perf_counter() - started
    LOG.info("pretrained %d layers (%s) in %.1fs", n_layers, cfg.pretrain, seconds)
    return {"mode": cfg.pretrain, "seconds": round(seconds, 2), "rows": int(x.shape[0])}


def rbm_for(
    x: Matrix, target: Matrix, out_dim: int, likelihood: str, base_lr: float
) -> tuple[RBM, float]:
    """The RBM whose visible units suit the data, and its CD learning rate.

    Word counts get constrained Poisson units reading the network's input rows scaled to pseudo
    counts of the average document length. Their inputs are counts of one to a few per word rather
    than values in [0, 1], so they take a smaller step (POISSON_LR_FACTOR); Gaussian units need a
    much smaller one still (Hinton's RBM guide, sec. 13.2).
    """
    n_visible = x.shape[1]
    if likelihood == "multinomial":
        length = float(np.asarray(target.sum(axis=1)).mean())
        input_mass = float(np.asarray(abs(x).sum(axis=1)).mean())
        scale = length / max(input_mass, 1e-12)
        return RBM(n_visible, out_dim, "poisson", input_scale=scale), base_lr * POISSON_LR_FACTOR
    if _in_unit_range(x):
        return RBM(n_visible, out_dim, "bernoulli"), base_lr
    return RBM(n_visible, out_dim, "gaussian"), base_lr / 10


def _in_unit_range(x: Matrix) -> bool:
    values = np.asarray(x.data if isinstance(x, sp.spmatrix) else x)
    return bool(values.size == 0 or (values.min() >= 0 and values.max() <= 1))
