"""Denoising benchmark: `TrainedModel.denoise` against classic denoisers on corrupted MNIST digits.

Usage (from the repo root):
  nice -n 10 .venv/bin/python benchmarks/denoise_bench.py [--bits 64] [--train-rows 59800] \
      [--epochs 10] [--pretrain-epochs 2] [--test-images 1000]

One model is trained here, in memory (nothing is cached), with the default `TrainConfig` (what
`bitseek train` gives; fine-tuning/pretraining epochs and bits as given, default = TrainConfig's),
on the first --train-rows rows of the MNIST training split. Two of its paths are scored:
`model_default` (`TrainedModel.denoise`: the denoising autoencoder) and `model_hasher_only` (the
same model without its denoiser, i.e. what `denoiser_epochs=0` gives: the hashing autoencoder's
reconstruction). The last --tune-images training rows (never trained on) choose the
total-variation weight per noise type. The test images are corrupted three ways (Gaussian
sigma 0.3 and 0.5 clipped to [0, 1], 50% masking) with a fixed seed, and every method sees the same
noisy images. PSNR (data range 1) is the mean over images of the per-image PSNR against the clean
image. The model is also scored on the clean images: the best its bottleneck can do.

Writes benchmarks/results/denoise_bench.json (exact command, settings, timings, every PSNR) and
benchmarks/results/denoise_examples.png (clean / noisy / TV / NLM / both model paths, a few digits).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.restoration import denoise_nl_means, denoise_tv_chambolle, estimate_sigma

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.artifact import TrainedModel  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data import Dataset, Split, load_dataset  # noqa: E402
from training.train import train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/images/mnist.npz"
NOISES = ("gaussian_0.3", "gaussian_0.5", "masking_0.5")
TV_WEIGHTS = (0.02, 0.05, 0.08, 0.12, 0.16, 0.2, 0.3, 0.4, 0.6)
LOG = logging.getLogger("denoise_bench")


def corrupt(clean: np.ndarray, noise: str, rng: np.random.Generator) -> np.ndarray:
    """clean float32 (n, H, W) in [0, 1] -> the corrupted copy, float32 in [0, 1]."""
    kind, level = noise.split("_")
    if kind == "gaussian":
        return (clean + rng.normal(0.0, float(level), clean.shape)).clip(0, 1).astype(np.float32)
    if kind == "masking":  # each pixel set to 0 with probability `level`
        return np.where(rng.random(clean.shape) < float(level), 0.0, clean).astype(np.float32)
    raise ValueError(f"unknown noise {noise!r}")


def psnr(clean: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB (data range 1) of (n, H, W) estimates; mse floored at 1e-10."""
    mse = ((clean.astype(np.float64) - estimate) ** 2).reshape(len(clean), -1).mean(1)
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-10))


def tv(noisy: np.ndarray, weight: float) -> np.ndarray:
    return np.stack([denoise_tv_chambolle(img, weight=weight) for img in noisy]).astype(np.float32)


def nlm(noisy: np.ndarray) -> np.ndarray:
    """Non-local means per image, h from the image's own noise estimate (scikit-image's recipe)."""
    out = []
    for img in noisy:
        sigma = float(estimate_sigma(img))
        out.append(denoise_nl_means(img, h=0.8 * sigma, sigma=sigma, patch_size=5,
                                    patch_distance=6, fast_mode=True))  # fmt: skip
    return np.stack(out).astype(np.float32)


def choose_tv_weight(clean: np.ndarray, noisy: np.ndarray) -> tuple[float, dict[str, float]]:
    scores = {str(w): float(psnr(clean, tv(noisy, w)).mean()) for w in TV_WEIGHTS}
    best = max(scores, key=lambda w: scores[w])
    return float(best), scores


def summary(values: np.ndarray) -> dict[str, float]:
    return {"mean": round(float(values.mean()), 3), "std": round(float(values.std()), 3)}


def plot_examples(path: Path, clean: np.ndarray, outputs: dict[str, dict[str, np.ndarray]],
                  picks: np.ndarray) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["clean", *next(iter(outputs.values())).keys()]
    n_rows = len(outputs) * len(picks)
    fig, axes = plt.subplots(n_rows, len(columns), figsize=(1.3 * len(columns), 1.3 * n_rows))
    for block, (noise, methods) in enumerate(outputs.items()):
        for j, idx in enumerate(picks):
            r = block * len(picks) + j
            images = [clean[idx], *(m[idx] for m in methods.values())]
            for c, (name, img) in enumerate(zip(columns, images, strict=True)):
                ax = axes[r, c]
                ax.imshow(img, cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(name, fontsize=7)
                if c == 0 and j == 0:
                    ax.set_ylabel(noise, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    defaults = TrainConfig()
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--train-rows", type=int, default=59800, help="training rows (first rows)")
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="fine-tuning epochs")
    p.add_argument("--pretrain-epochs", type=int, default=defaults.pretrain_epochs)
    p.add_argument("--test-images", type=int, default=1000)
    p.add_argument("--tune-images", type=int, default=200, help="held-out train rows for TV")
    p.add_argument("--examples", type=int, default=4, help="digits per noise type in the PNG")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "denoise_bench.json"))
    p.add_argument("--png", default=str(RESULTS / "denoise_examples.png"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_before = [round(x, 2) for x in os.getloadavg()]  # shared cores: record contention

    data = load_dataset(args.data)
    if data.modality != "image" or data.test is None:
        sys.exit(f"{args.data}: expected an image dataset with a test split")
    train_items = np.asarray(data.train.items)
    n_train = len(train_items)
    if args.train_rows + args.tune_images > n_train:
        sys.exit(f"--train-rows + --tune-images must be <= {n_train} (the training split)")
    subset = Dataset(
        modality=data.modality,
        train=Split(
            train_items[: args.train_rows],
            data.train.ids[: args.train_rows],
            None if data.train.labels is None else data.train.labels[: args.train_rows],
        ),
        test=None,
        label_names=data.label_names,
        source=data.source,
    )
    tune_clean = train_items[n_train - args.tune_images :].astype(np.float32) / 255
    test_clean = np.asarray(data.test.items)[: args.test_images].astype(np.float32) / 255

    base = TrainConfig(bits=args.bits, epochs=args.epochs, pretrain_epochs=args.pretrain_epochs,
                       seed=args.seed)  # fmt: skip
    t0 = time.perf_counter()
    trained = train(subset, base)
    train_seconds = round(time.perf_counter() - t0, 1)
    LOG.info("trained in %.1fs", train_seconds)
    fallback = TrainedModel(trained.modality, trained.featurizer, trained.hasher,
                            trained.train_config, trained.metrics)  # fmt: skip
    models = {"default": trained, "hasher_only": fallback}
    model_info = {
        "config": base.to_dict(),
        "train_seconds": train_seconds,
        "stage_seconds": {
            "neighbours": trained.metrics.get("neighbour_seconds"),
            "pretrain": trained.metrics.get("pretrain", {}).get("seconds"),
            "finetune": trained.metrics.get("finetune", {}).get("seconds"),
            "denoiser": (trained.metrics.get("denoiser") or {}).get("seconds"),
        },
        "n_dead_bits": trained.metrics.get("n_dead_bits"),
        "finetune_loss_history": trained.metrics.get("finetune", {}).get("loss_history"),
        "denoiser": trained.metrics.get("denoiser"),
    }

    rng = np.random.default_rng(args.seed)
    results: dict[str, Any] = {}
    timings: dict[str, dict[str, float]] = {}
    outputs: dict[str, dict[str, np.ndarray]] = {}
    clean_ceiling = {}
    for name, model in models.items():  # the bottleneck's ceiling: reconstruct clean images
        clean_ceiling[name] = summary(psnr(test_clean, model.denoise(test_clean)))
    for noise in NOISES:
        noisy = corrupt(test_clean, noise, rng)
        tune_noisy = corrupt(tune_clean, noise, rng)
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        weight, weight_scores = choose_tv_weight(tune_clean, tune_noisy)
        t["tv_tuning_s"] = time.perf_counter() - t0
        est: dict[str, np.ndarray] = {"noisy": noisy}
        t0 = time.perf_counter()
        est["tv"] = tv(noisy, weight)
        t["tv_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        est["nlm"] = nlm(noisy)
        t["nlm_s"] = time.perf_counter() - t0
        for name, model in models.items():
            t0 = time.perf_counter()
            est[f"model_{name}"] = np.asarray(model.denoise(noisy), dtype=np.float32)
            t[f"model_{name}_s"] = time.perf_counter() - t0
        results[noise] = {
            "tv_weight": weight,
            "tv_weight_psnr_on_tune": {k: round(v, 3) for k, v in weight_scores.items()},
            "psnr": {k: summary(psnr(test_clean, v)) for k, v in est.items()},
        }
        timings[noise] = {k: round(v, 2) for k, v in t.items()}
        outputs[noise] = est

    labels = data.test.labels
    digits = (
        np.argmax(labels[: args.test_images], axis=1)
        if labels is not None
        else np.arange(args.test_images)
    )
    picks = np.array([int(np.flatnonzero(digits == d)[0]) for d in range(args.examples)])
    Path(args.png).parent.mkdir(parents=True, exist_ok=True)
    plot_examples(Path(args.png), test_clean, outputs, picks)

    methods = list(next(iter(results.values()))["psnr"])
    print(f"\nPSNR (dB, mean over {args.test_images} MNIST test images), {args.bits}-bit models")
    print("| noise | TV weight | " + " | ".join(methods) + " |")
    print("|---|---|" + "---|" * len(methods))
    for noise, r in results.items():
        cells = " | ".join(f"{r['psnr'][m]['mean']:.2f}" for m in methods)
        print(f"| {noise} | {r['tv_weight']} | {cells} |")
    ceiling = " | ".join(f"model_{k} {v['mean']:.2f}" for k, v in clean_ceiling.items())
    print(f"clean input through the model (ceiling): {ceiling}")
    margins = {
        noise: round(
            r["psnr"]["model_default"]["mean"] - max(r["psnr"][m]["mean"] for m in ("tv", "nlm")), 3
        )
        for noise, r in results.items()
    }
    print(f"model_default minus the best classic denoiser (dB): {margins}")

    report = {
        "command": shlex.join([sys.executable, *sys.argv]),
        "data": args.data,
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "png")},
        "psnr_definition": "mean over images of 10 log10(1 / mse), pixels in [0, 1]",
        "noises": {
            "gaussian_0.3": "x + N(0, 0.3^2), clipped to [0, 1]",
            "gaussian_0.5": "x + N(0, 0.5^2), clipped to [0, 1]",
            "masking_0.5": "each pixel set to 0 with probability 0.5",
        },
        "classic": {
            "tv": "skimage denoise_tv_chambolle, weight from "
            f"{list(TV_WEIGHTS)} by mean PSNR on the last {args.tune_images} train images",
            "nlm": "skimage denoise_nl_means(h=0.8*sigma, sigma=estimate_sigma(img), patch_size=5, "
            "patch_distance=6, fast_mode=True), per image",
        },
        "model": model_info,
        "model_paths": {
            "model_default": "TrainedModel.denoise with the default denoising autoencoder",
            "model_hasher_only": "the same model without its denoiser (denoiser_epochs=0): the "
            "hashing autoencoder's reconstruction",
        },
        "model_psnr_on_clean_input": clean_ceiling,
        "margin_over_best_classic_db": margins,
        "results": results,
        "timings_s": timings,
        "example_test_indices": picks.tolist(),
        "niceness": os.nice(0),
        "torch_threads": torch.get_num_threads(),
        "load_average_before_after": [load_before, [round(x, 2) for x in os.getloadavg()]],
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out} and {args.png} in {report['total_seconds']} s")


if __name__ == "__main__":
    main()
