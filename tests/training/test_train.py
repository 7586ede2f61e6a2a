import numpy as np
import pytest
import torch

from models.autoencoder import DeepBinaryAutoencoder
from training.config import IMAGE_RECONSTRUCTION_NATS, PRETRAIN_MODES, TrainConfig
from training.data import Dataset, Split
from training.neighbours import neighbour_lists
from training.pretrain import pretrain_layer, pretrain_stack, rbm_for
from training.train import autoencoder_config, bernoulli_baseline_nats, train, training_sample

TINY = {"hidden_dims": (16,), "bits": 8, "epochs": 2, "pretrain_epochs": 1, "neighbours": 3,
        "batch_size": 32}  # fmt: skip


def clustered_vectors(n: int = 120, dim: int = 12, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(4, dim))
    y = rng.integers(0, 4, size=n)
    x = (centres[y] + rng.normal(size=(n, dim))).astype(np.float32)
    labels = np.eye(4, dtype=np.uint8)[y]
    split = Split(items=x, ids=[f"v{i}" for i in range(n)], labels=labels)
    return Dataset("vector", split, None, [f"c{i}" for i in range(4)], "synthetic")


def tiny_images(n: int = 64) -> Dataset:
    rng = np.random.default_rng(0)
    imgs = (rng.random((n, 6, 6)) * 255).astype(np.uint8)
    return Dataset("image", Split(imgs, [str(i) for i in range(n)], None), None, [], "synthetic")


def test_bad_train_config_is_a_value_error_with_the_fix() -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        TrainConfig(bits=10)
    with pytest.raises(ValueError, match="pretrain must be one of"):
        TrainConfig(pretrain="magic")
    with pytest.raises(ValueError, match="unknown setting"):
        TrainConfig.from_dict({"bitz": 32})
    with pytest.raises(ValueError, match="epochs must be >= 0"):
        TrainConfig(epochs=-1)


def test_fine_tuning_epochs_stay_within_the_budget_unless_set() -> None:
    default = TrainConfig()
    mnist = (2080, 1000, 500, 250, 32)  # pixels and gradient cells, the image network
    cifar = (4836, 1000, 500, 250, 32)
    text = (10000, 500, 500, 32)
    assert default.epochs_for(60000, mnist) == 10
    assert default.epochs_for(50000, cifar) == 6
    assert default.epochs_for(20000, text) == 10  # the suite's text sets are smaller still
    assert default.epochs_for(60000, text) == 5  # a large corpus's sample
    assert default.epochs_for(10**9, cifar) == 1  # never none
    assert TrainConfig(epochs=10).epochs_for(50000, cifar) == 10  # a setting wins
    assert TrainConfig(epochs=0).epochs_for(50000, cifar) == 0


def test_code_target_weight_follows_the_modality_unless_set() -> None:
    default = TrainConfig()
    image = autoencoder_config(default, "image", 10, "bernoulli").code_target_weight
    text = autoencoder_config(default, "text", 10, "multinomial").code_target_weight
    assert (image, text) == (3.0, 1.0)
    chosen = TrainConfig.from_dict({"code_target_weight": 3})
    assert autoencoder_config(chosen, "image", 10, "bernoulli").code_target_weight == 3.0
    assert autoencoder_config(chosen, "text", 10, "multinomial").code_target_weight == 3.0
    off = TrainConfig(code_target_weight=5.0, neighbours=0)  # no graph, no targets
    assert autoencoder_config(off, "image", 10, "bernoulli").code_target_weight == 0.0
    with pytest.raises(ValueError, match="code_target_weight must be >= 0"):
        TrainConfig(code_target_weight=-1.0)


def test_image_code_target_weight_grows_with_the_reconstruction() -> None:
    """Twice the reconstruction's nats, twice the image default; smaller reconstructions keep the
    default; a setting, or text, stay put."""
    twice = 2 * IMAGE_RECONSTRUCTION_NATS
    assert TrainConfig().code_target_weight_for("image", twice) == 6.0
    assert TrainConfig().code_target_weight_for("image", IMAGE_RECONSTRUCTION_NATS) == 3.0
    assert TrainConfig().code_target_weight_for("image", IMAGE_RECONSTRUCTION_NATS / 10) == 3.0
    assert TrainConfig().code_target_weight_for("text", twice) == 1.0
    assert TrainConfig(code_target_weight=2.0).code_target_weight_for("image", twice) == 2.0
    # the NLL under the per-feature mean: a fair coin per feature costs ln 2 nats each
    coins = np.tile(np.array([[0.0, 1.0, 0.5, 0.5]], np.float32), (10, 1)).T  # (4 items, 10)
    assert bernoulli_baseline_nats(coins) == pytest.approx(10 * np.log(2))
    assert bernoulli_baseline_nats(np.zeros((5, 3), np.float32)) == pytest.approx(0.0, abs=1e-9)
    # what training uses: 36 noisy pixels hold far fewer nats than the reference, 1,024 more
    config = TrainConfig(**TINY, gradient_inputs=False, denoiser_epochs=0)
    assert train(tiny_images(), config).metrics["code_target_weight"] == 3.0
    noise = (np.random.default_rng(1).random((64, 32, 32)) * 255).astype(np.uint8)
    large = Dataset("image", Split(noise, [str(i) for i in range(64)], None), None, [], "noise")
    nats = bernoulli_baseline_nats(noise.reshape(64, -1) / 255.0)
    assert nats > IMAGE_RECONSTRUCTION_NATS  # about 1,024 ln 2: past the reference
    weight = train(large, config).metrics["code_target_weight"]
    assert weight == pytest.approx(3.0 * nats / IMAGE_RECONSTRUCTION_NATS, rel=1e-4)


def test_config_json_errors_name_the_file_and_line(tmp_path) -> None:
    bad = tmp_path / "cfg.json"
    bad.write_text('{"bits": 32,\n "epochs": }')
    with pytest.raises(ValueError, match=r"cfg.json: invalid JSON at line 2"):
        TrainConfig.from_json(bad)
    good = tmp_path / "ok.json"
    good.write_text('{"bits": 16, "hidden_dims": [8]}')
    assert TrainConfig.from_json(good) == TrainConfig(bits=16, hidden_dims=(8,))


def test_train_returns_a_fitted_model_with_metrics() -> None:
    ds = clustered_vectors()
    events: list[dict] = []
    model = train(ds, TrainConfig(**TINY), progress=events.append)
    codes = model.encode(ds.train.items)
    assert codes.shape == (120, 1) and codes.dtype == np.uint8
    assert model.bits == 8 and model.input_shape == (12,)
    assert {"pretrain layer 1", "pretrain layer 2", "fine-tune"} <= {e["stage"] for e in events}
    assert all(set(e) == {"stage", "epoch", "epochs", "step", "steps", "loss"} for e in events)
    assert len(model.metrics["bit_rates"]) == 8
    assert model.metrics["finetune"]["epochs"] == 2


def test_training_is_deterministic_with_a_seed() -> None:
    ds = clustered_vectors()
    a = train(ds, TrainConfig(**TINY, seed=3)).encode_continuous(ds.train.items)
    b = train(ds, TrainConfig(**TINY, seed=3)).encode_continuous(ds.train.items)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dataset", [clustered_vectors, tiny_images])
def test_the_denoiser_trained_beside_the_hasher_is_the_one_trained_after_it(
    monkeypatch, dataset
) -> None:
    """On a spare core the denoiser trains on a thread of its own during the hasher's stages;
    both networks must come out bit for bit as when it trains after them."""
    import training.train

    ds = dataset()
    trained = {}
    for beside in (False, True):
        monkeypatch.setattr(training.train, "cores_for_a_second_stage", lambda *_, b=beside: b)
        events: list[dict] = []
        trained[beside] = train(ds, TrainConfig(**TINY, seed=5), progress=events.append)
        assert trained[beside].metrics["denoiser"]["beside_hasher"] is beside
        assert {"fine-tune", "denoiser"} <= {e["stage"] for e in events}
    assert all(m.denoiser is not None for m in trained.values())
    pairs = [(m.hasher.model.state_dict(), m.denoiser.state_dict()) for m in trained.values()]
    for before, after in zip(*pairs, strict=True):
        for name, weights in before.items():
            torch.testing.assert_close(after[name], weights, rtol=0, atol=0)


@pytest.mark.parametrize("mode", PRETRAIN_MODES)
def test_every_pretraining_mode_trains(mode: str) -> None:
    ds = tiny_images()
    model = train(ds, TrainConfig(**{**TINY, "epochs": 1}, pretrain=mode))
    assert model.encode(ds.train.items).shape == (64, 1)
    assert model.metrics["pretrain"]["mode"] == mode


@pytest.mark.parametrize("mode", ["autoencoder", "rbm"])
def test_pretraining_lowers_reconstruction_loss(mode: str) -> None:
    ds = clustered_vectors(n=400)
    cfg = TrainConfig(hidden_dims=(16,), bits=8, pretrain=mode, pretrain_epochs=15, batch_size=32)
    x = (ds.train.items - ds.train.items.mean(0)) / ds.train.items.std(0)
    acfg = autoencoder_config(cfg, "vector", 12, "gaussian")

    def recon_loss(model: DeepBinaryAutoencoder) -> float:
        with torch.no_grad():
            t = torch.from_numpy(x)
            return model.eval()(t, t).loss.item()

    torch.manual_seed(0)
    fresh = DeepBinaryAutoencoder(acfg)
    before = recon_loss(fresh)
    pretrain_stack(fresh, x, x, cfg, "cpu")
    assert recon_loss(fresh) < 0.9 * before


def test_contractive_pretraining_measures_the_jacobian_in_units_of_each_inputs_spread() -> None:
    x = clustered_vectors(n=200).train.items * np.geomspace(1e-3, 10, 12, dtype=np.float32)
    cfg = TrainConfig(hidden_dims=(16,), bits=8, pretrain="contractive", pretrain_epochs=1)
    learner = pretrain_layer(x, x, 16, "gaussian", cfg, "cpu")
    np.testing.assert_allclose(learner.input_scale.numpy(), x.std(0, ddof=1), rtol=1e-4)


def test_rbm_pretraining_on_word_counts_lowers_the_multinomial_loss() -> None:
    import scipy.sparse as sp

    from training.features import CountVectorFeaturizer

    rng = np.random.default_rng(0)
    topics = rng.dirichlet(np.full(40, 0.1), size=4)  # (4 topics, 40 words)
    counts = np.stack([rng.multinomial(50, topics[t]) for t in rng.integers(0, 4, 400)])
    featurizer = CountVectorFeaturizer.fit(sp.csr_matrix(counts, dtype=np.float32))
    target = featurizer.targets(sp.csr_matrix(counts, dtype=np.float32))
    x = featurizer.inputs_from_targets(target)
    cfg = TrainConfig(hidden_dims=(16,), bits=8, pretrain="rbm", pretrain_epochs=30, batch_size=32)
    acfg = autoencoder_config(cfg, "vector", featurizer.dim, "multinomial")

    def recon_loss(model: DeepBinaryAutoencoder) -> float:
        with torch.no_grad():
            xt = torch.from_numpy(x.toarray())
            return model.eval()(xt, torch.from_numpy(target.toarray())).loss.item()

    torch.manual_seed(0)
    model = DeepBinaryAutoencoder(acfg)
    before = recon_loss(model)
    pretrain_stack(model, x, target, cfg, "cpu")
    assert recon_loss(model) < before - 0.3  # nats per word
    # the bottom RBM has constrained Poisson units reading pseudo counts of the documents' length
    rbm, lr = rbm_for(x, target, 16, "multinomial", cfg.rbm_lr)
    assert rbm.visible == "poisson" and lr < cfg.rbm_lr
    pseudo_counts = x.toarray().sum(1) * rbm.input_scale
    assert pseudo_counts.mean() == pytest.approx(50, rel=1e-4)  # every document has 50 words
    assert rbm_for(x, target, 16, "bernoulli", cfg.rbm_lr)[0].visible == "bernoulli"


def test_text_vocabulary_is_capped_by_the_training_items() -> None:
    words = [f"term{i}" for i in range(400)]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(words, 30)) for _ in range(60)]
    ids = [str(i) for i in range(60)]
    ds = Dataset("text", Split(texts, ids, None), None, [], "synthetic")
    model = train(ds, TrainConfig(**TINY, denoiser_epochs=0))
    assert model.featurizer.dim == 60  # 400 candidate terms, default vocab_size 10,000, 60 items


def test_cuda_request_without_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        train(clustered_vectors(), TrainConfig(**TINY, device="cuda"))


def test_training_sample_is_uniform_deterministic_and_only_for_large_splits() -> None:
    cfg = TrainConfig(sample_rows=30, seed=1)
    a, b = training_sample(100, cfg), training_sample(100, cfg)
    assert a is not None and b is not None
    np.testing.assert_array_equal(a, b)
    assert len(np.unique(a)) == 30 and (np.diff(a) > 0).all() and a.max() < 100
    other = training_sample(100, TrainConfig(sample_rows=30, seed=2))
    assert other is not None and not np.array_equal(a, other)
    assert training_sample(30, cfg) is None  # all fit: nothing changes
    with pytest.raises(ValueError, match="sample_rows must be >= 2"):
        TrainConfig(sample_rows=1)
    with pytest.raises(ValueError, match="exact_knn_rows must be >= 1"):
        TrainConfig(exact_knn_rows=0)


def test_every_stage_reads_only_the_sample_and_the_model_encodes_every_item(monkeypatch) -> None:
    ds = clustered_vectors(n=200)
    seen: list[int] = []

    def recording(items, featurizer, x, counts, config, device):  # type: ignore[no-untyped-def]
        seen.append(x.shape[0])
        return neighbour_lists(items, featurizer, x, counts, config, device)

    monkeypatch.setattr("training.train.neighbour_lists", recording)
    cfg = TrainConfig(**TINY, sample_rows=50, seed=4)
    model = train(ds, cfg)
    assert seen == [50]
    assert model.metrics["n_train"] == 200 and model.metrics["n_sampled"] == 50
    assert model.metrics["denoiser"]["rows"] == 50
    assert model.encode(ds.train.items).shape == (200, 1)
    again = train(ds, cfg).encode_continuous(ds.train.items)
    np.testing.assert_array_equal(model.encode_continuous(ds.train.items), again)


def test_a_split_within_the_sample_bound_trains_as_before() -> None:
    ds = clustered_vectors()
    everything = TrainConfig(**TINY, sample_rows=10**9, exact_knn_rows=10**9)
    a = train(ds, TrainConfig(**TINY, sample_rows=120)).encode_continuous(ds.train.items)
    np.testing.assert_array_equal(a, train(ds, everything).encode_continuous(ds.train.items))
