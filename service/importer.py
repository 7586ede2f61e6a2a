"""Bulk import: a whole archive as a stream of items, written in durable batches.

Items travel as the API's item objects (``{"id", "text" | "image" | "vector", "metadata"}``), one
JSON object a line (NDJSON). ``read_items`` makes them from a file or folder; ``write_batch``
stores one batch through the registry (validated, encoded in one model call, one transaction),
optionally skipping ids already stored, so an interrupted import run again picks up where it
stopped. Used by ``POST /v1/collections/{c}/items/import`` and by ``bitseek import``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from service.config import InputLimits
from service.modalities import MODALITIES
from service.registry import NewItem, Registry

JSON_LINES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")


@dataclass(frozen=True)
class BatchResult:
    written: int
    skipped: int
    seq: int | None  # the batch's write sequence number; None when nothing was written
    model_version: int | None


def write_batch(
    registry: Registry, collection: str, items: Sequence[NewItem], skip_existing: bool
) -> BatchResult:
    """Store ``items`` (all or nothing); with ``skip_existing``, ids already stored are left."""
    skipped = 0
    if skip_existing:
        stored = registry.store.existing_ids(collection, [item.id for item in items])
        fresh = [item for item in items if item.id not in stored]
        skipped, items = len(items) - len(fresh), fresh
    if not items:
        return BatchResult(0, skipped, None, None)
    count, version, seq = registry.upsert(collection, items)
    return BatchResult(count, skipped, seq, version)


def read_items(path: Path) -> tuple[Iterator[dict[str, Any]], int | None]:
    """The items at ``path`` and how many there are (None: not known before reading).

    JSON Lines stream line by line: an item object as it is, a dataset record's ``labels`` (as
    ``bitseek train`` reads them) becoming its ``label`` metadata. Any other dataset ``bitseek
    train`` reads (npz, npy, image folders, train/test folders) is loaded and converted, both
    splits."""
    if path.is_file() and path.name.endswith(JSON_LINES):
        return _json_lines(path), None
    from training.data import load_dataset

    dataset = load_dataset(path)
    modality = MODALITIES[dataset.modality]({}, InputLimits())
    splits = [s for s in (dataset.train, dataset.test) if s is not None]

    def items() -> Iterator[dict[str, Any]]:
        for split in splits:
            for i, item_id in enumerate(split.ids):
                value: Any = split.items[i]
                if sp.issparse(value):
                    value = np.asarray(value.todense()).ravel()
                record: dict[str, Any] = {"id": item_id, modality.name: modality.to_json(value)}
                if split.labels is not None:
                    names = [dataset.label_names[j] for j in np.flatnonzero(split.labels[i])]
                    record["metadata"] = {"label": ",".join(names)}
                yield record

    return items(), sum(len(s) for s in splits)


def _json_lines(path: Path) -> Iterator[dict[str, Any]]:
    from training.data import json_objects

    for _, record in json_objects(path, "an item object"):
        labels = record.pop("labels", None)
        if isinstance(labels, list) and "metadata" not in record:
            record["metadata"] = {"label": ",".join(str(label) for label in labels)}
        yield record


def ndjson(items: Iterator[dict[str, Any]]) -> Iterator[bytes]:
    for item in items:
        yield json.dumps(item, separators=(",", ":")).encode() + b"\n"
