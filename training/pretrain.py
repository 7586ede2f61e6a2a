"""Greedy layer-wise pretraining (Hinton & Salakhutdinov, 2006; Bengio et al., 2007).

Each encoder layer of the deep autoencoder is first learned as a shallow feature learner trained on
the previous layer's features (the data itself for the first layer); its weights then seed that
encoder layer and the mirror decoder layer, and fine-tuning adjusts the whole unrolled stack.
The shallow learner is chosen by `TrainConfig.pretrain`: a plain, denoising, contractive or sparse
autoencoder, PSD, or an RBM trained with CD-1.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from models.autoencoder import DeepBinaryAutoencoder, data_dependent_init
from models.psd import PredictiveSparseDecomposition
from models.rbm import RBM
from models.shallow import FeatureLearner, LayerRegularisation, ShallowAutoencoder
from training.config import TrainConfig
from training.progress import EpochReporter

LOG = logging.getLogger(__name__)
Matrix: TypeAlias = np.ndarray | sp.csr_matrix
Progress = Callable[[dict[str, Any]], None]
# CD step of constrained Poisson units relative to `rbm_lr`: on TMC's first layer (2 epochs, visible
# biases started at the word shares) the hidden features' own p@100 was 0.70 / 0.71 at 1/10 and 1/3
# of it (0.61 at 1/96 without the bias start); the full step left 90% of hidden units stuck off
POISSON_LR_FACTOR = 1 / 3


def rows(m: Matrix, idx: np.ndarray, device: str) -> torch.Tensor:
    """Rows ``idx`` of a dense or CSR matrix as a dense float32 tensor on ``device``."""
    block = m[idx]
    dense = block.toarray() if sp.issparse(block) else block
    return torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32)).to(device)


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def cosine_schedule(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning rate decayed from its initial value to 0 over ``steps`` steps (half a cosine)."""
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(steps, 1)))
    )


def descend(
    opt: torch.optim.Optimizer, loss: torch.Tensor | None, sched: Any = None
) -> float:  # fmt: skip
    """One gradient step on ``loss``; returns its value."""
    assert loss is not None
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    return float(loss.item())


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
    """Train one shallow learner from x (n, in) to out_dim features; it rebuilds ``target``."""
    rng = np.random.default_rng(cfg.seed + layer)
    gen = torch.Generator(device=device).manual_seed(cfg.seed + layer)
    n, in_dim = x.shape
    learner: ShallowAutoencoder | PredictiveSparseDecomposition | RBM
    if cfg.pretrain == "rbm":
        learner, lr = rbm_for(x, target, out_dim, likelihood, cfg.rbm_lr)
        learner = learner.to(device)
    elif cfg.pretrain == "psd":
        learner = PredictiveSparseDecomposition(in_dim, out_dim, sparsity=cfg.psd_sparsity).to(
            device
        )
    else:
        learner = ShallowAutoencoder(in_dim, out_dim, likelihood, layer_regularisation(cfg)).to(
            device
        )
    sample = rows(x, np.sort(rng.choice(n, size=min(n, 2048), replace=False)), device)
    if isinstance(learner, RBM):  # small random weights are part of CD's recipe, biases are not
        learner.init_visible_bias(sample)
    else:
        data_dependent_init(learner.encoder, sample)
    if isinstance(learner, ShallowAutoencoder):
        learner.input_scale.copy_(sample.std(0))
    opt = (
        None
        if isinstance(learner, RBM)
        else torch.optim.Adam(learner.parameters(), cfg.pretrain_lr)
    )
    reporter = EpochReporter(progress, f"pretrain layer {layer + 1}", cfg.pretrain_epochs,
                             math.ceil(n / cfg.batch_size))  # fmt: skip
    for epoch in range(cfg.pretrain_epochs):
        reporter.start_epoch()
        for idx in minibatches(n, cfg.batch_size, rng):
            xb = rows(x, idx, device)
            if isinstance(learner, RBM):
                momentum = 0.5 if epoch == 0 else 0.9
                loss_value = learner.cd1_step(xb, lr, momentum=momentum, generator=gen)
            else:
                assert opt is not None
                if isinstance(learner, PredictiveSparseDecomposition):
                    loss = learner(xb).loss
                else:
                    loss = learner(xb, rows(target, idx, device), generator=gen).loss
                    assert loss is not None
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if isinstance(learner, PredictiveSparseDecomposition):
                    learner.after_step()
                loss_value = loss.item()
            reporter.step(epoch, loss_value, len(idx))
        mean = reporter.end_epoch(epoch)
        LOG.info("pretrain layer %d (%s) epoch %d: loss %.4f", layer, cfg.pretrain, epoch + 1, mean)
    if isinstance(learner, RBM):
        learner.sharpen(sample)
    return learner.eval()


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
    Returns timing and per-layer final losses for the training metrics.
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
