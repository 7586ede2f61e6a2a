"""TrainedModel (featuriser + hasher + metrics), its on-disk format, and the one loader.

A model directory holds:
  format.json      {"format": "bitseek-model", "version": FORMAT_VERSION}
  config.json      modality, bits, input_shape, the autoencoder config and the training config
  weights.pt       the autoencoder's state_dict (loaded with weights_only=True: no pickle code runs)
  denoiser.pt      the denoising autoencoder's state_dict, when config.json has a "denoiser" config;
                   models without one (denoiser_epochs=0) denoise through the hashing autoencoder
  featurizer.json  the featuriser's settings (e.g. the vocabulary); featurizer.npz its arrays
  metrics.json     training metrics, per-bit activation rates, evaluations (`record_evaluation`)
It is written into a temporary sibling directory, fsynced, and renamed into place, so a reader
never sees a half-written model, a failed save leaves any previous model intact, and once `save`
returns the model survives a power loss.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from models.denoiser import Denoiser, DenoiserConfig, reconstruct
from models.hasher import SemanticHasher
from training.durable import fsync_path, fsync_tree, make_dirs
from training.features import Featurizer, ImageFeaturizer, featurizer_from_state

LOG = logging.getLogger(__name__)
FORMAT_NAME = "bitseek-model"
FORMAT_VERSION = 1
DENOISER_FILE = "denoiser.pt"


class ModelFormatError(ValueError):
    """A model directory is missing, corrupt, or written by an incompatible version."""


class TrainedModel:
    def __init__(
        self,
        modality: str,
        featurizer: Featurizer,
        hasher: SemanticHasher,
        train_config: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        denoiser: Denoiser | None = None,
    ) -> None:
        self.modality = modality
        self.featurizer = featurizer
        self.hasher = hasher
        self.denoiser = denoiser.to(hasher.device).eval() if denoiser is not None else None
        self.train_config = dict(train_config or {})
        self.metrics: dict[str, Any] = dict(metrics or {})

    @property
    def bits(self) -> int:
        return self.hasher.n_bits

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.featurizer.input_shape

    @property
    def device(self) -> str:
        return self.hasher.device

    def featurize(self, items: Any) -> np.ndarray | sp.csr_matrix:
        """float32 (n, input_dim) encoder inputs; ValueError on items of the wrong kind.

        Sparse for text and word counts: a large corpus's tf-idf would not fit in memory dense."""
        x = self.featurizer.transform(items)
        if sp.issparse(x):
            return sp.csr_matrix(x, dtype=np.float32)
        return np.asarray(x, dtype=np.float32)

    def encode(self, items: Any) -> np.ndarray:
        """uint8 (n, bits // 8) packed codes in numpy.packbits order."""
        return self.hasher.encode(self.featurizer.transform(items))

    def encode_features(self, features: np.ndarray | sp.csr_matrix) -> np.ndarray:
        """``encode`` of the items ``featurize`` made these features from."""
        return self.hasher.encode(features)

    def encode_continuous(self, items: Any) -> np.ndarray:
        """float32 (n, bits) code-unit activations in [0, 1]."""
        return self.hasher.encode_continuous(self.featurizer.transform(items))

    def denoise(self, items: Any) -> np.ndarray | list[list[tuple[str, float]]]:
        """The decoder's reconstruction of (possibly corrupted) items, in the items' own terms."""
        features = self.featurize(items)
        x = features.toarray() if isinstance(features, sp.csr_matrix) else features
        recon = self.reconstruct(x)  # (n, input_dim) mean of the output distribution
        return self.featurizer.from_reconstruction(recon, items)

    def reconstruct(self, features: np.ndarray) -> np.ndarray:
        """float32 (n, input_dim) encoder inputs -> (n, input_dim) the mean reconstruction, in
        the same feature space: what ``denoise`` computes before it maps back to items."""
        x = np.asarray(features, dtype=np.float32)
        if self.denoiser is None:
            return self.hasher.denoise(x)
        featurizer = self.featurizer
        if isinstance(featurizer, ImageFeaturizer) and featurizer.gradients:
            # the denoiser reads and rebuilds pixels; the gradients follow from its picture
            pixels = reconstruct(self.denoiser, featurizer.pixels(x))
            return featurizer.with_gradients(pixels)
        return reconstruct(self.denoiser, x)

    def tangents(self, items: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The encoder's ``k`` leading tangent directions at each item: singular values
        float32 (n, k) and the right singular vectors of its Jacobian, float32 (n, k, input_dim),
        the input-space directions that move the code most. An image's are over its pixels (the
        direct path: the gradient histograms it also reads are not differentiated)."""
        jac = self.hasher.encoder_jacobian(self.featurize(items))  # (n, bits, input_dim)
        if isinstance(self.featurizer, ImageFeaturizer):
            jac = jac[:, :, : self.featurizer.n_pixels]
        _, values, vt = np.linalg.svd(jac.astype(np.float64), full_matrices=False)
        k = min(k, values.shape[1])
        return values[:, :k].astype(np.float32), vt[:, :k, :].astype(np.float32)

    def to(self, device: str) -> TrainedModel:
        hasher = self.hasher.to(device)
        return TrainedModel(
            self.modality, self.featurizer, hasher, self.train_config, self.metrics, self.denoiser
        )

    def save(self, directory: str | Path) -> None:
        """Write the model to ``directory`` atomically (replacing any model already there)."""
        directory = Path(directory)
        make_dirs(directory.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            state = self.hasher.state()
            meta, arrays = self.featurizer.to_state()
            _write_json(tmp / "format.json", {"format": FORMAT_NAME, "version": FORMAT_VERSION})
            config = {
                "modality": self.modality,
                "bits": self.bits,
                "input_shape": list(self.input_shape),
                "autoencoder": state["config"],
                "train": self.train_config,
            }
            if self.denoiser is not None:
                config["denoiser"] = self.denoiser.config.to_dict()
                torch.save(_cpu(self.denoiser.state_dict()), tmp / DENOISER_FILE)
            _write_json(tmp / "config.json", config)
            torch.save(_cpu(state["state_dict"]), tmp / "weights.pt")
            _write_json(tmp / "featurizer.json", meta)
            np.savez(tmp / "featurizer.npz", **arrays)  # type: ignore[arg-type]
            _write_json(tmp / "metrics.json", self.metrics)
            fsync_tree(tmp)  # the files' contents before the rename that publishes them
            old = None
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old-{tmp.name[-8:]}")
                directory.rename(old)
            tmp.rename(directory)
            fsync_path(directory.parent)  # the rename itself
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        LOG.info("saved %d-bit %s model to %s", self.bits, self.modality, directory)


def load_model(directory: str | Path, device: str = "cpu") -> TrainedModel:
    """Read a model directory written by `TrainedModel.save`; ModelFormatError when unusable."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ModelFormatError(f"{directory}: no model directory there")
    fmt = _read_json(directory / "format.json")
    if fmt.get("format") != FORMAT_NAME:
        raise ModelFormatError(f"{directory}: not a Bitseek model (format.json says {fmt!r})")
    if fmt.get("version") != FORMAT_VERSION:
        raise ModelFormatError(
            f"{directory}: model format version {fmt.get('version')!r}, this Bitseek reads version "
            f"{FORMAT_VERSION}; retrain the model with this version (bitseek train)"
        )
    config = _read_json(directory / "config.json")
    try:
        weights = torch.load(directory / "weights.pt", map_location="cpu", weights_only=True)
        with np.load(directory / "featurizer.npz") as z:
            arrays = {k: z[k] for k in z.files}
        featurizer = featurizer_from_state(_read_json(directory / "featurizer.json"), arrays)
        hasher = SemanticHasher.from_state(
            {"config": config["autoencoder"], "state_dict": weights}, device
        )
        modality = str(config["modality"])
    except ModelFormatError:
        raise
    except (
        OSError,
        KeyError,
        TypeError,
        ValueError,
        RuntimeError,
        EOFError,
        pickle.UnpicklingError,
    ) as e:
        raise ModelFormatError(f"{directory}: corrupt model ({type(e).__name__}: {e})") from e
    denoiser = _load_denoiser(directory, config.get("denoiser"))
    # an image's denoiser reads its pixels alone
    wanted = (
        featurizer.n_pixels if isinstance(featurizer, ImageFeaturizer) else hasher.config.input_dim
    )
    if denoiser is not None and denoiser.config.input_dim != wanted:
        raise ModelFormatError(
            f"{directory / DENOISER_FILE}: the denoiser reads {denoiser.config.input_dim} inputs, "
            f"the model's features need {wanted}; retrain the model"
        )
    metrics = (
        _read_json(directory / "metrics.json") if (directory / "metrics.json").exists() else {}
    )
    return TrainedModel(modality, featurizer, hasher, config.get("train", {}), metrics, denoiser)


def _load_denoiser(directory: Path, config: Any) -> Denoiser | None:
    """The denoiser that config.json describes (None when it has none); errors name the file."""
    if config is None:
        return None
    path = directory / DENOISER_FILE
    if not path.exists():
        raise ModelFormatError(
            f"{path}: missing; config.json describes a denoiser, so the model is incomplete"
        )
    try:
        model = Denoiser(DenoiserConfig.from_dict(config))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except (OSError, TypeError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise ModelFormatError(f"{path}: corrupt denoiser ({type(e).__name__}: {e})") from e
    return model.eval()


def _cpu(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state_dict.items()}


def copy_model(src: Path, dst: Path) -> None:
    """Copy a model directory to ``dst`` (which must not exist), on disk when this returns."""
    make_dirs(dst.parent)
    shutil.copytree(src, dst)
    fsync_tree(dst)
    fsync_path(dst.parent)


def record_evaluation(model_dir: Path, key: str, entry: dict[str, Any]) -> None:
    """Set metrics.json["evaluation"][key] = entry in a model directory, atomically.

    The file is rewritten through a temporary sibling and a rename, so readers see the old or the
    new file, never half of one; an exclusive lock on the directory keeps two evaluations of the
    same model (e.g. on two datasets at once) from losing each other's entries.
    """
    path = model_dir / "metrics.json"
    fd = os.open(model_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            metrics = json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err}); cannot add the evaluation") from err
        if not isinstance(metrics, dict):
            raise ValueError(f"{path}: expected a JSON object; cannot add the evaluation")
        evaluations = metrics.get("evaluation")
        metrics["evaluation"] = {
            **(evaluations if isinstance(evaluations, dict) else {}),
            key: entry,
        }
        tmp = tempfile.NamedTemporaryFile(
            "w", dir=model_dir, prefix=".metrics.", suffix=".tmp", delete=False
        )
        try:
            with tmp:
                tmp.write(json.dumps(metrics, indent=2, sort_keys=True))
            os.replace(tmp.name, path)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    finally:
        os.close(fd)  # releases the lock


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ModelFormatError(f"{path.parent}: missing {path.name}; not a complete model") from e
    except (OSError, json.JSONDecodeError) as e:
        raise ModelFormatError(f"{path}: unreadable ({e})") from e
    if not isinstance(obj, dict):
        raise ModelFormatError(f"{path}: expected a JSON object")
    return obj
