"""An archive to import, as the NDJSON lines of its items (``service.importer`` stores them).

Light on purpose: `bitseek import --url` only reads and sends, so it starts without torch.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

JSON_LINES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")


def item_lines(path: Path) -> tuple[Iterator[bytes], int | None]:
    """The items at ``path`` as NDJSON lines, and how many there are (None: not known before
    reading).

    JSON Lines pass as they are (no parsing here: the importer validates each line once), but
    for a dataset record's ``labels`` (as ``bitseek train`` reads them), which become its
    ``label`` metadata. Any other dataset ``bitseek train`` reads (npz, npy, image folders,
    train/test folders) is loaded and converted, both splits."""
    if path.is_file() and path.name.endswith(JSON_LINES):
        return _json_lines(path), None
    import numpy as np
    import scipy.sparse as sp

    from service.config import InputLimits
    from service.modalities import MODALITIES
    from training.data import load_dataset

    dataset = load_dataset(path)
    modality = MODALITIES[dataset.modality]({}, InputLimits())
    splits = [s for s in (dataset.train, dataset.test) if s is not None]

    def lines() -> Iterator[bytes]:
        for split in splits:
            for i, item_id in enumerate(split.ids):
                value: Any = split.items[i]
                if sp.issparse(value):
                    value = np.asarray(value.todense()).ravel()
                record: dict[str, Any] = {"id": item_id, modality.name: modality.to_json(value)}
                if split.labels is not None:
                    names = [dataset.label_names[j] for j in np.flatnonzero(split.labels[i])]
                    record["metadata"] = _label_metadata(names)
                yield _line(record)

    return lines(), sum(len(s) for s in splits)


def _json_lines(path: Path) -> Iterator[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            for line in handle:
                yield _labels_as_metadata(line.rstrip(b"\r\n"))
    except (OSError, EOFError) as error:  # EOFError: a gzip file cut short
        raise ValueError(f"{path}: cannot be read: {error}") from error


def _labels_as_metadata(line: bytes) -> bytes:
    if b'"labels"' not in line:
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line  # the importer names the line
    if not isinstance(record, dict):
        return line
    labels = record.pop("labels", None)
    if isinstance(labels, list) and "metadata" not in record:
        record["metadata"] = _label_metadata(str(label) for label in labels)
    return _line(record)


def _label_metadata(names: Iterable[str]) -> dict[str, str]:
    """A record's labels as the item's metadata: one ``label`` key, comma-separated."""
    return {"label": ",".join(names)}


def _line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()
