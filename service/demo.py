"""The demo collections `bitseek demo` builds: small models on the embedded demo corpora.

Small epoch budgets and narrow layers keep the build well under two minutes on two CPU cores;
the models are for trying the API, not for quality figures (see benchmarks/ for those).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.config import Settings
from service.modalities import MODALITIES
from service.registry import NewItem, Registry
from service.storage import open_offline_registry
from training.durable import fsync_path

log = logging.getLogger(__name__)

DEMO_TEXT = "demo-text"
DEMO_IMAGES = "demo-images"
# Plain training defaults with a demo-sized epoch budget (cut-down networks scored below PCA sign)
TEXT_CONFIG: dict[str, Any] = {"bits": 32, "epochs": 20}
IMAGE_CONFIG: dict[str, Any] = {"bits": 16, "hidden_dims": [256], "epochs": 20}
DONE_MARK = "demo-complete"  # in the collection's directory, written after its last item


def _metadata(labels: np.ndarray | None, names: list[str], i: int) -> dict[str, Any]:
    if labels is None:
        return {}
    picked = [names[j] for j in np.flatnonzero(labels[i])]
    return {"label": picked[0] if len(picked) == 1 else ",".join(picked)}


def _record_evaluation(model: Any, dataset: Any) -> None:
    """Score the model against the baselines on the demo's held-out split (about a second), so
    the collection shows its precision@k beside PCA-ITQ's, as `bitseek evaluate` records it."""
    from training.data import DatasetError
    from training.evaluate import evaluate_model

    try:
        evaluation = evaluate_model(model, dataset, seed=0).to_dict(pr_curves=False)
    except DatasetError as exc:  # e.g. unlabelled data: nothing to decide relevance by
        log.info("%s: no evaluation (%s)", dataset.source, exc)
        return
    entry = {k: evaluation[k] for k in ("bits", "n_queries", "n_database", "methods")}
    model.metrics["evaluation"] = {f"{dataset.source} test split": entry}


def _is_kept(registry: Registry, name: str, demo_ids: list[str], done_mark: Path) -> bool:
    """A marked build is complete. An unmarked one (interrupted, or built before the mark existed)
    is redone only when it is neither whole nor holds items a user wrote into it."""
    if done_mark.exists():
        return True
    state = registry.states[name]
    if state.serving is not None and state.size == len(demo_ids):
        return True
    ours = set(demo_ids)
    return any(item_id not in ours for _, item_id, _, _ in registry.store.item_keys(name))


def build_demo(settings: Settings, if_missing: bool = False) -> list[str]:
    """Create (or, without ``if_missing``, rebuild) the demo collections; returns a report."""
    from training.config import TrainConfig
    from training.demo_data import demo_images, demo_text
    from training.train import train

    # Demo models are tiny: one intra-op thread is several times faster than two on a busy
    # 2-core machine (threads spin on each other), and this process exits after the build.
    torch.set_num_threads(1)
    registry = open_offline_registry(settings)
    report = []
    try:
        for name, make, config in (
            (DEMO_TEXT, demo_text, TEXT_CONFIG),
            (DEMO_IMAGES, demo_images, IMAGE_CONFIG),
        ):
            start = time.perf_counter()
            dataset = make()
            split = dataset.train
            done_mark = registry.collection_dir(name) / DONE_MARK
            if name in registry.states:
                if if_missing and _is_kept(registry, name, split.ids, done_mark):
                    report.append(f"{name}: exists, left as is")
                    continue
                registry.delete(name)
            train_device = "cuda" if registry.device.startswith("cuda") else "cpu"
            model = train(dataset, TrainConfig.from_dict({**config, "device": train_device}))
            _record_evaluation(model, dataset)
            spec: dict[str, Any] = {
                "bits": model.bits,
                "description": f"demo ({dataset.source})",
                **MODALITIES[dataset.modality].spec_of_items(split.items),
            }
            modality = registry.create(name, dataset.modality, spec).modality
            registry.install_model(name, model)
            items = [
                NewItem(
                    item_id,
                    modality.to_json(split.items[i]),
                    _metadata(split.labels, dataset.label_names, i),
                    f"items[{i}]",
                )
                for i, item_id in enumerate(split.ids)
            ]
            for start_row in range(0, len(items), 500):
                registry.upsert(name, items[start_row : start_row + 500])
            done_mark.touch()
            fsync_path(done_mark)
            fsync_path(done_mark.parent)
            took = time.perf_counter() - start
            report.append(
                f"{name}: {len(items)} {dataset.modality} items, {model.bits}-bit model,"
                f" built in {took:.1f}s"
            )
            log.info(report[-1])
    finally:
        registry.store.close()
    return report
