import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from training.artifact import FORMAT_VERSION, ModelFormatError, TrainedModel, load_model
from training.config import TrainConfig
from training.data import Dataset, Split
from training.train import train

TINY = {"hidden_dims": (16,), "bits": 16, "epochs": 1, "pretrain_epochs": 1, "neighbours": 3,
        "batch_size": 32}  # fmt: skip
TEXTS = [
    "rocket launch delayed weather nasa orbit",
    "nasa rocket orbit launch window shuttle",
    "hockey game overtime team goalie win",
    "goalie team hockey season game playoff",
] * 6


@pytest.fixture(scope="module")
def text_model() -> tuple[TrainedModel, list[str]]:
    split = Split(TEXTS, [str(i) for i in range(len(TEXTS))], None)
    ds = Dataset("text", split, None, [], "synthetic")
    return train(ds, TrainConfig(**TINY)), TEXTS


@pytest.fixture(scope="module")
def image_model() -> tuple[TrainedModel, np.ndarray]:
    imgs = (np.random.default_rng(0).random((40, 5, 5)) * 255).astype(np.uint8)
    ds = Dataset("image", Split(imgs, [str(i) for i in range(40)], None), None, [], "synthetic")
    return train(ds, TrainConfig(**TINY)), imgs


def test_save_load_round_trip_gives_identical_codes(tmp_path, text_model, image_model) -> None:
    for model, items in (text_model, image_model):
        model.save(tmp_path / model.modality)
        again = load_model(tmp_path / model.modality)
        np.testing.assert_array_equal(again.encode(items), model.encode(items))
        np.testing.assert_array_equal(
            again.encode_continuous(items), model.encode_continuous(items)
        )
        assert again.modality == model.modality and again.bits == model.bits
        assert again.input_shape == model.input_shape
        assert again.metrics == json.loads(json.dumps(model.metrics))
        assert again.denoiser is not None and (tmp_path / model.modality / "denoiser.pt").exists()
        if model.modality == "text":
            assert again.denoise(items) == model.denoise(items)
        else:
            np.testing.assert_array_equal(again.denoise(items), model.denoise(items))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image", "text"]  # no temp dirs left


def test_save_replaces_an_existing_model_atomically(tmp_path, text_model) -> None:
    model, items = text_model
    target = tmp_path / "m"
    target.mkdir()
    (target / "stale.txt").write_text("old")
    model.save(target)
    assert not (target / "stale.txt").exists()
    np.testing.assert_array_equal(load_model(target).encode(items), model.encode(items))
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_denoise_outputs_follow_the_modality(text_model, image_model) -> None:
    model, texts = text_model
    terms = model.denoise(texts[:2])
    assert len(terms) == 2 and all(isinstance(t, str) and w > 0 for t, w in terms[0])
    model, imgs = image_model
    out = model.denoise(imgs[:3])
    assert out.shape == (3, 5, 5) and out.dtype == np.float32
    assert (out >= 0).all() and (out <= 1).all()


def test_wrong_version_and_corrupt_files_are_clear_errors(tmp_path, text_model) -> None:
    model, _ = text_model
    model.save(tmp_path / "m")
    fmt = tmp_path / "m" / "format.json"
    fmt.write_text(json.dumps({"format": "bitseek-model", "version": FORMAT_VERSION + 1}))
    with pytest.raises(ModelFormatError, match="format version .* retrain"):
        load_model(tmp_path / "m")
    fmt.write_text(json.dumps({"format": "bitseek-model", "version": FORMAT_VERSION}))
    (tmp_path / "m" / "weights.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFormatError, match="corrupt model"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(ModelFormatError, match="missing config.json"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelFormatError, match="no model directory"):
        load_model(tmp_path / "nothing")


def test_featurize_rejects_items_of_the_wrong_kind(text_model) -> None:
    model, _ = text_model
    with pytest.raises(ValueError, match="text item 0"):
        model.encode([1.5])


def test_text_features_stay_sparse_and_images_dense(text_model, image_model) -> None:
    model, texts = text_model
    x = model.featurize(texts)
    assert sp.issparse(x) and x.dtype == np.float32
    assert x.shape == (len(texts), model.featurizer.dim)
    np.testing.assert_array_equal(model.hasher.encode(x), model.encode(texts))
    images, imgs = image_model
    pixels = images.featurize(imgs)
    assert isinstance(pixels, np.ndarray) and pixels.dtype == np.float32
    assert pixels.shape == (len(imgs), 25)


def test_count_vector_model_round_trip_and_denoise_in_full_width(tmp_path) -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    counts = sp.csr_matrix(rng.poisson(0.5, size=(40, 30)).astype(np.float32))
    ds = Dataset("vector", Split(counts, [str(i) for i in range(40)], None), None, [], "synthetic")
    model = train(ds, TrainConfig(**TINY, vocab_size=20))
    assert model.input_shape == (30,) and model.hasher.config.likelihood == "multinomial"
    out = model.denoise(counts[:3])
    assert out.shape == (3, 30) and (out >= 0).all()
    np.testing.assert_allclose(
        out.sum(1), np.asarray(counts[:3][:, model.featurizer.columns].sum(1)).ravel(), rtol=1e-4
    )
    model.save(tmp_path / "m")
    np.testing.assert_array_equal(load_model(tmp_path / "m").encode(counts), model.encode(counts))


def test_a_model_saved_without_a_denoiser_loads_and_denoises_through_the_hasher(
    tmp_path, image_model
) -> None:
    model, imgs = image_model
    model.save(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    del config["denoiser"]  # what the version before the denoiser wrote
    config_path.write_text(json.dumps(config))
    (tmp_path / "m" / "denoiser.pt").unlink()
    old = load_model(tmp_path / "m")
    assert old.denoiser is None
    hasher_only = TrainedModel(model.modality, model.featurizer, model.hasher)
    np.testing.assert_array_equal(old.denoise(imgs), hasher_only.denoise(imgs))
    assert not np.array_equal(old.denoise(imgs), model.denoise(imgs))  # it was the denoiser's
    old.save(tmp_path / "again")  # and saving it again writes no denoiser
    assert not (tmp_path / "again" / "denoiser.pt").exists()
    assert load_model(tmp_path / "again").denoiser is None


def test_corrupt_or_missing_denoiser_weights_name_the_file(tmp_path, image_model) -> None:
    model, _ = image_model
    model.save(tmp_path / "m")
    weights = tmp_path / "m" / "denoiser.pt"
    weights.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFormatError, match=r"denoiser\.pt: corrupt denoiser"):
        load_model(tmp_path / "m")
    weights.unlink()
    with pytest.raises(ModelFormatError, match=r"denoiser\.pt: missing"):
        load_model(tmp_path / "m")


def test_moving_a_model_keeps_its_denoiser(image_model) -> None:
    model, imgs = image_model
    moved = model.to("cpu")
    assert moved.denoiser is model.denoiser
    np.testing.assert_array_equal(moved.denoise(imgs), model.denoise(imgs))


def test_save_fsyncs_the_files_before_the_rename_and_the_rename_itself(
    tmp_path, text_model, fsynced
) -> None:
    model, _ = text_model
    target = tmp_path / "models" / "v1"
    model.save(target)
    synced = [Path(p) for p in fsynced]
    # every file, and the temporary directory, while it still had its temporary name
    in_tmp = [p for p in synced if p.parent.name.startswith(".v1.")]
    assert sorted(p.name for p in in_tmp) == sorted(p.name for p in target.iterdir())
    assert any(p.name.startswith(".v1.") and p.parent == target.parent for p in synced)
    assert synced[-1] == target.parent  # the rename, last
    assert tmp_path in synced  # the directory "models" that save created
