"""`train(dataset, config) -> TrainedModel`: featurise, pretrain layer by layer, unroll, fine-tune,
then fit the denoising autoencoder behind `denoise`.

Called by `bitseek train` and by the service's admin retraining; deterministic for a given seed and
device (CPU by default; CUDA when asked for and available).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

import numpy as np
import torch

from models.autoencoder import AutoencoderConfig, DeepBinaryAutoencoder
from models.hasher import SemanticHasher, bit_statistics
from training import distributed
from training.artifact import TrainedModel
from training.config import TrainConfig
from training.data import Dataset, take
from training.denoiser import DenoiserFit
from training.device import cores_for_a_second_stage, resolve_device
from training.features import ImageFeaturizer, fit_featurizer
from training.finetune import finetune
from training.neighbours import neighbour_lists, neighbour_targets, spectral_codes
from training.pretrain import pretrain_stack
from training.progress import Progress

LOG = logging.getLogger(__name__)
T = TypeVar("T")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autoencoder_config(
    cfg: TrainConfig,
    modality: str,
    input_dim: int,
    likelihood: str,
    reconstruction_nats: float | None = None,
) -> AutoencoderConfig:
    code_target = cfg.code_target_weight_for(modality, reconstruction_nats)
    return AutoencoderConfig(
        input_dim=input_dim,
        hidden_dims=cfg.hidden_for(modality),
        n_bits=cfg.bits,
        likelihood=cfg.likelihood or likelihood,
        dropout=cfg.dropout,
        code_noise=0.0 if cfg.straight_through else cfg.code_noise,
        straight_through=cfg.straight_through,
        balance_weight=cfg.balance_weight,
        decorrelation_weight=cfg.decorrelation_weight,
        neighbour_weight=cfg.neighbour_weight if cfg.neighbours > 0 else 0.0,
        code_target_weight=code_target if cfg.neighbours > 0 else 0.0,
    )


def bernoulli_baseline_nats(targets: np.ndarray) -> float:
    """The mean item's Bernoulli NLL (nats, summed over features) under the per-feature mean, how
    large a reconstruction loss the decoder starts from: linear in the targets, so it is the sum
    of the features' binary entropies at their means."""
    p = np.clip(np.asarray(targets).mean(axis=0, dtype=np.float64), 1e-12, 1 - 1e-12)
    return float(-(p * np.log(p) + (1 - p) * np.log1p(-p)).sum())


def training_sample(n: int, config: TrainConfig) -> np.ndarray | None:
    """Sorted indices of a uniform random sample of ``config.sample_rows`` of n training items,
    drawn with the seed; None when all n fit."""
    if n <= config.sample_rows:
        return None
    rng = np.random.default_rng(config.seed)
    return np.sort(rng.choice(n, config.sample_rows, replace=False))


def train(dataset: Dataset, config: TrainConfig, progress: Progress | None = None) -> TrainedModel:
    """Fit a hasher on ``dataset.train``; ``progress`` gets {"stage", "epoch", "epochs", "loss"}."""
    started = time.perf_counter()
    device = distributed.device_for(resolve_device(config.device))
    seed_everything(config.seed)
    items = dataset.train.items
    n_train = n = len(dataset.train)
    if n < 2:
        raise ValueError(f"{dataset.source}: the training split needs at least 2 items, got {n}")
    # every stage below sees only the sample, so time and memory stop growing with the split; the
    # items left out get their codes from the trained network, as unseen items do
    sample = training_sample(n, config)
    if sample is not None:
        items, n = take(items, sample), len(sample)
        LOG.info("training on a uniform sample of %d of the %d items (sample_rows)", n, n_train)
    # the global steps run once (on rank 0 when data-parallel, training/distributed.py) and are
    # shared; per-item transforms run on every rank
    featurizer = distributed.share(lambda: fit_featurizer(
        dataset.modality, items, min(config.vocab_size, n), likelihood=config.likelihood,
        image_gradients=config.gradient_inputs,
    ))  # fmt: skip
    raw_target = featurizer.targets(items)
    x = featurizer.inputs_from_targets(raw_target)  # tokenise once
    nats = bernoulli_baseline_nats(raw_target) if dataset.modality == "image" else None
    acfg = autoencoder_config(
        config, dataset.modality, featurizer.dim, featurizer.likelihood, reconstruction_nats=nats
    )
    model = DeepBinaryAutoencoder(acfg).to(device)
    LOG.info("training a %s autoencoder on %d items (%s likelihood, %s)",
             "-".join(map(str, acfg.layer_dims)), n, acfg.likelihood, device)  # fmt: skip

    denoising = None
    if config.denoiser_epochs > 0:  # a separate network: the hash code cannot carry the detail
        # it reads an image's pixels only: the gradients of a noisy picture are noise themselves
        inputs, targets = x, raw_target
        if isinstance(featurizer, ImageFeaturizer):
            inputs, targets = featurizer.pixels(x), featurizer.pixels(raw_target)
        denoising = DenoiserFit(
            inputs, targets, featurizer.kind, acfg.likelihood, config, device, progress
        )
    # it needs nothing of the hasher's, so a spare core trains it meanwhile (same network)
    beside = denoising is not None and cores_for_a_second_stage(device, distributed.world_size())
    denoised = _on_a_thread(denoising.run, "denoiser") if beside and denoising else None
    if beside:
        LOG.info("the denoiser trains beside the hasher, on a core of its own")

    knn_started = time.perf_counter()

    def graphs() -> tuple[np.ndarray, np.ndarray | None]:
        """The decoder's neighbours (n, k) and the code units' spectral targets."""
        knns = neighbour_lists(items, featurizer, x, raw_target, config, device)
        knn = knns[0] if knns else np.zeros((n, 0), np.int64)
        if knn.shape[1] > 0 and acfg.code_target_weight > 0:
            return knn, spectral_codes(knns, config.bits, config.seed)
        return knn, None

    knn, code_targets = distributed.share(graphs)
    target = neighbour_targets(raw_target, knn, acfg.likelihood)
    knn_seconds = time.perf_counter() - knn_started

    pre = pretrain_stack(model, x, raw_target, config, device, progress)
    fine = finetune(model, x, target, knn, config, device, progress, code_targets)
    distributed.check_same_weights(model, "hasher")
    hasher = SemanticHasher(model, device)
    denoiser, denoiser_metrics = None, None
    if denoising is not None:
        denoiser, denoiser_metrics = denoised.result() if denoised else denoising.run()
        denoiser_metrics["beside_hasher"] = beside
        distributed.check_same_weights(denoiser, "denoiser")
    bits = hasher.encode_bits(x)
    stats = bit_statistics(bits)
    if stats["n_dead_bits"]:
        LOG.warning("%d of %d bits are (nearly) constant on the training split: %s",
                    stats["n_dead_bits"], config.bits, stats["dead_bits"])  # fmt: skip
    metrics = {
        "n_train": n_train,
        "n_sampled": n,
        "device": device,
        "processes": distributed.world_size(),  # data-parallel ranks (training/distributed.py)
        "layer_dims": list(acfg.layer_dims),
        "likelihood": acfg.likelihood,
        "code_target_weight": acfg.code_target_weight,
        "neighbour_seconds": round(knn_seconds, 2),
        "pretrain": pre,
        "finetune": fine,
        "denoiser": denoiser_metrics,
        "train_seconds": round(time.perf_counter() - started, 2),
        **stats,
    }
    return TrainedModel(dataset.modality, featurizer, hasher, config.to_dict(), metrics, denoiser)


def _on_a_thread(fn: Callable[[], T], name: str) -> Future[T]:
    """``fn()`` started on a thread of its own; the future re-raises its error. A daemon: a
    training that fails elsewhere does not wait for it to end."""
    future: Future[T] = Future()

    def run() -> None:
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the result
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
