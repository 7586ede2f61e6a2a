"""What a collection's model learned, as pictures made from the collection's own items.

Computed once per (collection, model version) and kept as JSON beside the collection's data
(``collections/<name>/insights/v<version>.json``), so a page view only reads a file:
- ``map``: the items' code activations projected on their two principal axes, with the values
  of the metadata keys worth colouring by;
- ``bit_rates``: how often each bit is on (a bit always on or off carries nothing);
- ``reconstructions`` (image models): originals beside the autoencoder's reconstructions;
- ``tangents`` (image models): for one item, the leading right singular vectors of the encoder's
  Jacobian, the input directions that move its code most (the book's contractive-autoencoder
  figures);
- ``field`` (image and vector models): the reconstruction field r(x) - x on the plane of the
  items' two principal axes in feature space, the arrows a denoising autoencoder learns to point
  back towards the data.
Model calls go through ``run_model`` (the server's ``ModelRunner.call``); nothing here runs on
the event loop.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from service.collection import CollectionState, Serving
from service.payloads import encode_png
from service.store import ItemStore

log = logging.getLogger(__name__)

RunModel = Callable[[Callable[[Any], Any], Any], Any]
MAX_ITEMS = 2000  # items drawn on the map (a seeded sample of larger collections)
MAX_COLOR_KEYS = 4  # metadata keys offered for colouring
MAX_CATEGORIES = 24  # a key with more distinct values is not a colouring
N_RECONSTRUCTIONS = 8
N_TANGENTS = 6
FIELD_GRID = 15  # arrows per side of the reconstruction field
FIELD_POINTS = 400  # items drawn under the field
FORMAT = 1


def insights_path(collection_dir: Path, version: int) -> Path:
    return collection_dir / "insights" / f"v{version}.json"


class InsightsCache:
    """One computation per (collection, version) at a time; later readers get the file."""

    def __init__(self) -> None:
        self._locks: dict[Path, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(
        self,
        path: Path,
        compute: Callable[[], dict[str, Any]],
    ) -> dict[str, Any]:
        cached = _read(path)
        if cached is not None:
            return cached
        with self._guard:
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:
            cached = _read(path)  # another request computed it while we waited
            if cached is not None:
                return cached
            result = compute()
            _write_atomic(path, result)
            return result


def _read(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) and value.get("format") == FORMAT else None


def _write_atomic(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def compute_insights(
    state: CollectionState, serving: Serving, store: ItemStore, run_model: RunModel
) -> dict[str, Any]:
    """Every picture's data for ``serving``'s model over (a sample of) the stored items."""
    model = serving.model
    ids, values, metadata = _sample(state, store)
    out: dict[str, Any] = {
        "format": FORMAT,
        "collection": state.name,
        "model_version": serving.version,
        "bits": model.bits,
        "modality": state.modality.name,
        "items": len(ids),
        "map": None,
        "bit_rates": [],
        "reconstructions": None,
        "tangents": None,
        "field": None,
    }
    if not ids:
        return out
    items = state.modality.batch(values)
    activations = np.asarray(run_model(model.encode_continuous, items), dtype=np.float64)
    out["bit_rates"] = [round(float(r), 4) for r in (activations > 0.5).mean(axis=0)]
    out["map"] = _code_map(ids, activations, metadata)
    if state.modality.pixels:
        out["reconstructions"] = _reconstructions(state, serving, ids, values, run_model)
        out["tangents"] = item_tangents(state, serving, ids[0], values[0], run_model)
    if state.modality.reconstructs_features:
        features = run_model(model.featurize, items)
        if sp.issparse(features):
            features = features.toarray()
        out["field"] = _field(np.asarray(features, dtype=np.float64), serving, run_model)
    return out


def _sample(
    state: CollectionState, store: ItemStore
) -> tuple[list[str], list[Any], list[dict[str, Any]]]:
    """Up to MAX_ITEMS stored items (a seeded sample when there are more), in store order."""
    rows = [row for chunk in store.iter_items(state.name) for row in chunk]
    if len(rows) > MAX_ITEMS:
        keep = np.sort(np.random.RandomState(0).choice(len(rows), MAX_ITEMS, replace=False))
        rows = [rows[i] for i in keep]
    values = [state.modality.from_bytes(row.payload) for row in rows]
    return [row.id for row in rows], values, [row.metadata for row in rows]


def _principal_axes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean (d,) and the two leading principal axes (2, d) of the rows of ``x``."""
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    axes = np.zeros((2, x.shape[1]))
    axes[: min(2, len(vt))] = vt[:2]
    return mean, axes


def _code_map(
    ids: list[str], activations: np.ndarray, metadata: list[dict[str, Any]]
) -> dict[str, Any]:
    mean, axes = _principal_axes(activations)
    xy = (activations - mean) @ axes.T  # (n, 2)
    return {
        "x": [round(float(v), 4) for v in xy[:, 0]],
        "y": [round(float(v), 4) for v in xy[:, 1]],
        "ids": ids,
        "color": _colour_keys(metadata),
        "axes": "first two principal axes of the code units' activations",
    }


def _colour_keys(metadata: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Metadata keys with 2..MAX_CATEGORIES distinct values: per key, each item's value."""
    keys: list[str] = []
    for meta in metadata:
        keys.extend(k for k in meta if k not in keys)
    out: dict[str, list[Any]] = {}
    for key in keys:
        column = [meta.get(key) for meta in metadata]
        distinct = {json.dumps(v) for v in column}
        if 2 <= len(distinct) <= MAX_CATEGORIES:
            out[key] = column
        if len(out) == MAX_COLOR_KEYS:
            break
    return out


def _spread(n: int, count: int) -> list[int]:
    return sorted({int(i) for i in np.linspace(0, n - 1, num=min(n, count))})


def _reconstructions(
    state: CollectionState,
    serving: Serving,
    ids: list[str],
    values: list[Any],
    run_model: RunModel,
) -> list[dict[str, str]]:
    picked = _spread(len(ids), N_RECONSTRUCTIONS)
    batch = state.modality.batch([values[i] for i in picked])
    recon = np.asarray(run_model(serving.model.denoise, batch))
    return [
        {"id": ids[i], "original": encode_png(np.asarray(values[i])), "reconstruction": png}
        for i, png in zip(picked, (encode_png(r) for r in recon), strict=True)
    ]


def item_tangents(
    state: CollectionState, serving: Serving, item_id: str, value: Any, run_model: RunModel
) -> dict[str, Any]:
    """The encoder's leading tangent directions at one image, drawn as images (grey is 0)."""
    shape = state.modality.input_shape or ()
    batch = state.modality.batch([value])
    singular, vectors = run_model(lambda items: serving.model.tangents(items, N_TANGENTS), batch)
    pictures = []
    for vector in np.asarray(vectors)[0]:
        scale = float(np.abs(vector).max()) or 1.0
        pixels = (0.5 + 0.5 * vector / scale).reshape(shape)
        pictures.append(encode_png(pixels.astype(np.float32)))
    return {
        "id": item_id,
        "image": encode_png(np.asarray(value)),
        "singular_values": [round(float(v), 5) for v in np.asarray(singular)[0]],
        "directions": pictures,
    }


def _field(features: np.ndarray, serving: Serving, run_model: RunModel) -> dict[str, Any]:
    """r(x) - x on a FIELD_GRID x FIELD_GRID grid of the items' principal plane, in that plane's
    coordinates, with a sample of the items' own coordinates under it."""
    mean, axes = _principal_axes(features)
    coords = (features - mean) @ axes.T  # (n, 2)
    lo, hi = coords.min(axis=0), coords.max(axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    a = np.linspace(lo[0] - pad[0], hi[0] + pad[0], FIELD_GRID)
    b = np.linspace(lo[1] - pad[1], hi[1] + pad[1], FIELD_GRID)
    grid = np.array([(u, v) for v in b for u in a])  # (G, 2)
    points = mean + grid @ axes  # (G, d)
    recon = np.asarray(run_model(serving.model.reconstruct, points.astype(np.float32)))
    delta = (recon.astype(np.float64) - points) @ axes.T  # (G, 2), in the plane
    shown = _spread(len(coords), FIELD_POINTS)
    return {
        "grid": [[round(float(v), 4) for v in row] for row in np.hstack([grid, delta])],
        "points": [[round(float(v), 4) for v in coords[i]] for i in shown],
        "axes": "first two principal axes of the items' features",
    }
