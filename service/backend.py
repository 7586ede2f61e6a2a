"""How the service meets the trained models: a ``Model`` protocol (the ``TrainedModel`` contract
of docs/ARCHITECTURE.md), the device choice, and a ``Backend`` that loads, validates and trains.

The backend is injected into ``create_app`` so API tests can use a fake model; the default one
imports ``training`` lazily, so the service starts even before anything is trained.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from service.errors import InvalidInput

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]


class Model(Protocol):
    @property
    def modality(self) -> str: ...
    @property
    def bits(self) -> int: ...
    @property
    def input_shape(self) -> tuple[int, ...]: ...
    @property
    def metrics(self) -> dict[str, Any]: ...

    def featurize(self, items: Any) -> Any: ...  # the encoder's inputs: dense or CSR
    def encode(self, items: Any) -> np.ndarray: ...
    def encode_features(self, features: Any) -> np.ndarray: ...  # encode(items) from featurize's
    def encode_continuous(self, items: Any) -> np.ndarray: ...
    def denoise(self, items: Any) -> Any: ...
    def reconstruct(self, features: np.ndarray) -> np.ndarray: ...  # feature space in and out
    def tangents(self, items: Any, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def save(self, directory: Path) -> None: ...


class Backend(Protocol):
    """Loads model versions, checks training settings, trains (in the worker process)."""

    def load(self, directory: Path, device: str) -> Model: ...
    def validate(self, settings: dict[str, Any]) -> None: ...
    def train(
        self,
        modality: str,
        items: Any,
        ids: Sequence[str],
        settings: dict[str, Any],
        progress: Progress,
    ) -> Model: ...


class TrainingBackend:
    """The real thing: ``training.artifact.load_model`` and ``training.train.train``."""

    def load(self, directory: Path, device: str) -> Model:
        from training.artifact import load_model

        model: Model = load_model(directory, device=device)
        return model

    def validate(self, settings: dict[str, Any]) -> None:
        from training.config import TrainConfig

        try:
            TrainConfig.from_dict(settings, source="settings")
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid training settings: {exc}", "settings") from None

    def train(
        self,
        modality: str,
        items: Any,
        ids: Sequence[str],
        settings: dict[str, Any],
        progress: Progress,
    ) -> Model:
        from training.config import TrainConfig
        from training.data import Dataset, Split
        from training.train import train

        split = Split(items=items, ids=list(ids), labels=None)
        dataset = Dataset(
            modality=modality,  # type: ignore[arg-type]
            train=split,
            test=None,
            label_names=[],
            source="service",
        )
        model: Model = train(dataset, TrainConfig.from_dict(settings), progress=progress)
        return model
