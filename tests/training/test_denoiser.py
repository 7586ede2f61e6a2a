import numpy as np
import pytest
import scipy.sparse as sp
import torch

from models.denoiser import Denoiser, DenoiserConfig, reconstruct
from training.config import TrainConfig
from training.data import Dataset, Split
from training.denoiser import corrupt_batch, fit_denoiser
from training.features import CountVectorFeaturizer
from training.train import train

SMALL = {"denoiser_hidden": (64, 32), "denoiser_epochs": 12, "denoiser_batch_size": 32}
TINY = {"hidden_dims": (16,), "bits": 8, "epochs": 1, "pretrain_epochs": 1, "neighbours": 3,
        "batch_size": 32}  # fmt: skip


def prototype_images(n: int, seed: int) -> np.ndarray:
    """(n, 8, 8) images in [0, 1]: one of 6 random binary shapes, with mild pixel jitter."""
    shapes = np.random.default_rng(99).random((6, 8, 8)) < 0.35
    rng = np.random.default_rng(seed)
    imgs = shapes[rng.integers(0, 6, n)] * rng.uniform(0.8, 1.0, (n, 8, 8))
    return imgs.astype(np.float32)


def topic_counts(n: int, seed: int) -> np.ndarray:
    """(n, 40) word counts: each document draws 30 words from one of 4 ten-word topics."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((n, 40), dtype=np.float32)
    for i, topic in enumerate(rng.integers(0, 4, n)):
        words = rng.choice(10, size=30, p=np.linspace(2, 1, 10) / np.linspace(2, 1, 10).sum())
        np.add.at(counts[i], topic * 10 + words, 1)
    return counts


def psnr(clean: np.ndarray, estimate: np.ndarray) -> float:
    mse = ((clean - estimate) ** 2).reshape(len(clean), -1).mean(1)
    return float((10 * np.log10(1 / np.maximum(mse, 1e-10))).mean())


@pytest.fixture(scope="module")
def image_denoiser() -> Denoiser:
    x = prototype_images(600, seed=0).reshape(600, -1)
    model, _ = fit_denoiser(x, x, "image", "bernoulli", TrainConfig(**SMALL), "cpu")
    return model


@pytest.mark.parametrize("kind", ["gaussian", "masking", "salt_pepper"])
def test_denoiser_brings_corrupted_images_closer_to_the_clean_ones(kind, image_denoiser) -> None:
    clean = prototype_images(200, seed=1)
    rng = np.random.default_rng(2)
    hit = rng.random(clean.shape)
    if kind == "gaussian":
        noisy = (clean + rng.normal(0, 0.3, clean.shape)).clip(0, 1)
    elif kind == "masking":
        noisy = np.where(hit < 0.5, 0.0, clean)
    else:
        noisy = np.where(hit < 0.2, (rng.random(clean.shape) < 0.5).astype(np.float32), clean)
    out = reconstruct(image_denoiser, noisy.reshape(200, -1).astype(np.float32)).reshape(
        clean.shape
    )
    assert out.min() >= 0 and out.max() <= 1
    assert psnr(clean, out) > psnr(clean, noisy) + 3  # a clear gain, not a rounding error


def test_denoiser_removes_gaussian_noise_from_vectors() -> None:
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 20))  # data on a 3-dimensional subspace of 20 features

    def sample(n: int) -> np.ndarray:
        x = rng.normal(size=(n, 3)) @ basis
        return ((x - x.mean(0)) / x.std(0)).astype(np.float32)

    x = sample(800)
    model, _ = fit_denoiser(x, x, "vector", "gaussian", TrainConfig(**SMALL), "cpu")
    clean = sample(200)
    noisy = clean + rng.normal(0, 0.4, clean.shape).astype(np.float32)
    out = reconstruct(model, noisy)
    assert ((out - clean) ** 2).mean() < 0.7 * ((noisy - clean) ** 2).mean()


def test_denoiser_restores_dropped_words() -> None:
    counts = topic_counts(600, seed=0)
    f = CountVectorFeaturizer.fit(counts)
    model, _ = fit_denoiser(f.transform(counts), f.targets(counts), "counts", "multinomial",
                            TrainConfig(**SMALL), "cpu")  # fmt: skip
    clean = topic_counts(200, seed=1)
    dropped = clean * (np.random.default_rng(2).random(clean.shape) >= 0.5)
    shares = reconstruct(model, np.asarray(f.transform(dropped).toarray()))
    np.testing.assert_allclose(shares.sum(1), 1.0, rtol=1e-4)

    def nll(p: np.ndarray) -> float:  # per word, of the clean document
        return float((-(clean * np.log(np.maximum(p, 1e-12))).sum(1) / clean.sum(1)).mean())

    unigram = counts.sum(0) / counts.sum()
    own = dropped / dropped.sum(1, keepdims=True)
    # better than the dropped document's own word shares smoothed by the corpus, at any mix
    baseline = min(nll(a * own + (1 - a) * unigram) for a in (0.2, 0.4, 0.6, 0.8, 0.9))
    assert nll(shares) < baseline


def test_corruptions_stay_in_the_data_range_and_vary_per_item() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 50)
    pixels = corrupt_batch(x, "pixels", 0.5, gen)
    assert pixels.shape == x.shape and pixels.min() >= 0 and pixels.max() <= 1
    changed = (pixels != x).float().mean(1)
    assert changed.std() > 0.05  # levels and kinds differ between items
    words = torch.from_numpy(
        sp.random(64, 50, density=0.3, random_state=0, dtype=np.float32).toarray()
    )
    words = words / words.norm(dim=1, keepdim=True).clamp_min(1e-12)
    dropped = corrupt_batch(words, "words", 0.5, gen)
    assert ((dropped != 0) <= (words != 0)).all()  # only removes words
    kept = dropped.norm(dim=1) > 0
    torch.testing.assert_close(dropped.norm(dim=1)[kept], torch.ones(int(kept.sum())))
    with pytest.raises(ValueError, match="unknown noise"):
        corrupt_batch(x, "blur", 0.5, gen)


def test_fit_is_deterministic_and_reports_progress() -> None:
    x = prototype_images(100, seed=0).reshape(100, -1)
    events: list[dict] = []
    cfg = TrainConfig(**{**SMALL, "denoiser_epochs": 2}, seed=4)
    a, metrics = fit_denoiser(x, x, "image", "bernoulli", cfg, "cpu", events.append)
    b, _ = fit_denoiser(x, x, "image", "bernoulli", cfg, "cpu")
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
    epoch_ends = [e for e in events if e["step"] == e["steps"]]  # step events are time-throttled
    assert [(e["stage"], e["epoch"]) for e in epoch_ends] == [("denoiser", 1), ("denoiser", 2)]
    assert all(set(e) == {"stage", "epoch", "epochs", "step", "steps", "loss"} for e in events)
    assert metrics["epochs"] == 2 and len(metrics["loss_history"]) == 2


def test_train_attaches_the_denoiser_and_denoise_uses_it() -> None:
    imgs = (prototype_images(64, seed=0) * 255).astype(np.uint8)
    ds = Dataset("image", Split(imgs, [str(i) for i in range(64)], None), None, [], "synthetic")
    events: list[dict] = []
    model = train(ds, TrainConfig(**TINY, **{**SMALL, "denoiser_epochs": 2}), events.append)
    assert model.denoiser is not None and model.metrics["denoiser"]["epochs"] == 2
    assert "denoiser" in {e["stage"] for e in events}
    out = model.denoise(imgs[:5])
    features = model.featurize(imgs[:5])  # pixels, then their gradient histograms
    assert features.shape[1] > 64 and model.denoiser.config.input_dim == 64  # it reads pixels
    expected = reconstruct(model.denoiser, features[:, :64]).reshape(5, 8, 8)
    rebuilt = model.reconstruct(features)  # in the features' space: the picture's gradients too
    np.testing.assert_allclose(rebuilt, model.featurizer.with_gradients(expected.reshape(5, 64)))
    np.testing.assert_array_equal(out, expected.clip(0, 1))


def test_without_denoiser_epochs_denoise_falls_back_to_the_hasher() -> None:
    imgs = (prototype_images(64, seed=0) * 255).astype(np.uint8)
    ds = Dataset("image", Split(imgs, [str(i) for i in range(64)], None), None, [], "synthetic")
    model = train(ds, TrainConfig(**TINY, denoiser_epochs=0))
    assert model.denoiser is None and model.metrics["denoiser"] is None
    out = model.denoise(imgs[:5])
    recon = model.hasher.denoise(model.featurize(imgs[:5]))
    expected = recon[:, :64].reshape(5, 8, 8).clip(0, 1)
    np.testing.assert_array_equal(out, expected)


def test_bad_denoiser_settings_say_what_to_change() -> None:
    with pytest.raises(ValueError, match="denoiser_epochs must be >= 0"):
        TrainConfig(denoiser_epochs=-1)
    with pytest.raises(ValueError, match="denoiser_noise must be in"):
        TrainConfig(denoiser_noise=1.0)
    with pytest.raises(ValueError, match="denoiser_hidden must be one or more positive"):
        TrainConfig(denoiser_hidden=())
    with pytest.raises(ValueError, match="denoiser_rows must be >= 1"):
        TrainConfig(denoiser_rows=0)
    with pytest.raises(ValueError, match="denoiser config: unknown setting"):
        DenoiserConfig.from_dict({"input_dim": 4, "depth": 3})
    assert TrainConfig.from_dict({"denoiser_hidden": [32]}).denoiser_hidden == (32,)
