"""Dataset readers: one function, `load_dataset`, turns a path into a `Dataset`.

Supported layouts (the modality follows from the layout unless given):
- text: a `.jsonl` / `.jsonl.gz` file of `{"id": str, "text": str, "labels": [str, ...]}` objects,
  or a folder holding `train.jsonl[.gz]` and `test.jsonl[.gz]`;
- images: an `.npz` with `x_train, y_train, x_test, y_test` (or `x, y`) holding uint8 arrays of
  shape (N, H, W) or (N, H, W, C), or a folder of PNG/JPEG files in class subfolders (optionally
  under `train/` and `test/`);
- vectors: an `.npz` in SciPy's CSR layout (`data, indices, indptr, shape`) or a dense `.npy`, with
  optional multi-hot `labels` (inside the `.npz`, or a `<name>.labels.npy` beside the `.npy`), or a
  folder holding `train` and `test` files of either kind.
"""

from __future__ import annotations

import gzip
import json
import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast

import numpy as np
import scipy.sparse as sp

LOG = logging.getLogger(__name__)

Modality = Literal["text", "image", "vector"]
MODALITIES: tuple[Modality, ...] = ("text", "image", "vector")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

Items: TypeAlias = list[str] | np.ndarray | sp.csr_matrix


class DatasetError(ValueError):
    """A dataset file is missing, malformed, or not what the caller asked for."""


@dataclass
class Split:
    items: Items  # text: list[str]; image: uint8 (N, H, W[, C]); vector: float32 (N, D) or CSR
    ids: list[str]  # one per row, unique
    labels: np.ndarray | None  # uint8 multi-hot (N, n_labels), or None when unlabelled

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Dataset:
    modality: Modality
    train: Split  # all rows when the data has no split
    test: Split | None
    label_names: list[str]  # column names of `labels`
    source: str  # the path it came from


def load_dataset(path: str | Path, modality: Modality | None = None) -> Dataset:
    """Read the dataset at `path`; raise `DatasetError` naming the file and the problem."""
    path = Path(path)
    if modality is not None and modality not in MODALITIES:
        raise DatasetError(f"modality must be one of {', '.join(MODALITIES)}, got {modality!r}")
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory")
    dataset = _read_folder(path) if path.is_dir() else _read_file(path)
    if modality is not None and dataset.modality != modality:
        raise DatasetError(
            f"{path}: holds {dataset.modality} data, but modality {modality!r} was asked for"
        )
    LOG.info(
        "loaded %s dataset from %s: %d train, %s test, %d labels",
        dataset.modality,
        path,
        len(dataset.train),
        len(dataset.test) if dataset.test is not None else "no",
        len(dataset.label_names),
    )
    return dataset


def _read_file(path: Path) -> Dataset:
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz")):
        records = _read_jsonl(path)
        return _text_dataset(path, {"train": records})
    if name.endswith(".npz"):
        return _read_npz(path)
    if name.endswith(".npy"):
        matrix, labels = _read_npy(path)
        return _vector_dataset(path, {"train": (matrix, labels)})
    raise DatasetError(
        f"{path}: unsupported file type; expected .jsonl[.gz] (text), .npz (images or CSR "
        "vectors), .npy (dense vectors) or a folder"
    )


def _read_folder(path: Path) -> Dataset:
    splits = {split: _find_split_file(path, split) for split in ("train", "test")}
    found = {split: file for split, file in splits.items() if file is not None}
    if found:
        if "train" not in found:
            raise DatasetError(f"{path}: has a test file but no train file")
        kinds = {_kind_of(file) for file in found.values()}
        if len(kinds) > 1:
            raise DatasetError(f"{path}: train and test files are of different kinds: {kinds}")
        kind = kinds.pop()
        if kind == "text":
            return _text_dataset(path, {s: _read_jsonl(f) for s, f in found.items()})
        if kind == "image_folder":
            return _image_folder_dataset(path, found)
        vectors: dict[str, tuple[np.ndarray | sp.csr_matrix, np.ndarray | None]] = {}
        for split, file in found.items():
            if file.suffix == ".npy":
                vectors[split] = _read_npy(file)
            else:
                vectors[split] = _read_csr_npz(file)
        return _vector_dataset(path, vectors)
    if any(child.is_dir() for child in path.iterdir()):
        return _image_folder_dataset(path, {"train": path})
    raise DatasetError(
        f"{path}: a dataset folder must hold train/test files (train.jsonl[.gz], train.npz, "
        "train.npy) or image class subfolders"
    )


def _find_split_file(folder: Path, split: str) -> Path | None:
    for suffix in (".jsonl.gz", ".jsonl", ".npz", ".npy"):
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    candidate = folder / split
    if candidate.is_dir():
        return candidate
    return None


def _kind_of(file: Path) -> str:
    if file.is_dir():
        return "image_folder"
    if file.name.endswith((".jsonl", ".jsonl.gz")):
        return "text"
    return "vector"


# text


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            yield from handle
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot be read as UTF-8 JSON Lines: {error}") from error


def json_objects(path: Path, expected: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(``path:line``, object) for each non-blank line of a JSON Lines file (gzipped or not);
    ``DatasetError`` naming the line when one is not JSON or not ``expected`` (an object)."""
    for line_number, line in enumerate(_open_text(path), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{where}: not valid JSON ({error.msg})") from error
        if not isinstance(record, dict):
            raise DatasetError(f"{where}: expected {expected}")
        yield where, record


def _read_jsonl(path: Path) -> list[tuple[str | None, str, list[str] | None]]:
    records: list[tuple[str | None, str, list[str] | None]] = []
    for where, record in json_objects(path, "a JSON object with a 'text' key"):
        text = record.get("text")
        if not isinstance(text, str):
            raise DatasetError(f"{where}: key 'text' must be a string, got {type(text).__name__}")
        item_id = record.get("id")
        if item_id is not None and not isinstance(item_id, str | int):
            raise DatasetError(f"{where}: key 'id' must be a string")
        labels = record.get("labels")
        if labels is not None and (
            not isinstance(labels, list) or not all(isinstance(label, str) for label in labels)
        ):
            raise DatasetError(f"{where}: key 'labels' must be a list of strings")
        records.append((None if item_id is None else str(item_id), text, labels))
    if not records:
        raise DatasetError(f"{path}: holds no records")
    return records


def _text_dataset(
    source: Path, splits: dict[str, list[tuple[str | None, str, list[str] | None]]]
) -> Dataset:
    has_labels = {split: any(r[2] is not None for r in recs) for split, recs in splits.items()}
    label_names = sorted(
        {label for recs in splits.values() for _, _, labels in recs for label in labels or []}
    )
    column = {name: i for i, name in enumerate(label_names)}
    built: dict[str, Split] = {}
    for split, records in splits.items():
        ids = [rid if rid is not None else f"{split}-{i}" for i, (rid, _, _) in enumerate(records)]
        _check_unique(source, split, ids)
        labels = None
        if has_labels[split]:
            labels = np.zeros((len(records), len(label_names)), dtype=np.uint8)
            for row, (_, _, record_labels) in enumerate(records):
                labels[row, [column[label] for label in record_labels or []]] = 1
        built[split] = Split(items=[text for _, text, _ in records], ids=ids, labels=labels)
    return Dataset("text", built["train"], built.get("test"), label_names, str(source))


# images and npz


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DatasetError(f"{path}: not a readable .npz archive: {error}") from error


def _read_npz(path: Path) -> Dataset:
    arrays = _load_npz(path)
    if {"data", "indices", "indptr", "shape"} <= arrays.keys():
        matrix, labels = _csr_from_arrays(path, arrays)
        return _vector_dataset(path, {"train": (matrix, labels)})
    if "x_train" in arrays:
        split_keys = {"train": ("x_train", "y_train")}
        if "x_test" in arrays:
            split_keys["test"] = ("x_test", "y_test")
    elif "x" in arrays:
        split_keys = {"train": ("x", "y")}
    else:
        raise DatasetError(
            f"{path}: expected keys x_train/y_train[/x_test/y_test], x/y, or a SciPy CSR matrix "
            f"(data, indices, indptr, shape); found {sorted(arrays)}"
        )
    xs = {split: arrays[x] for split, (x, _) in split_keys.items()}
    ys = {split: arrays.get(y) for split, (_, y) in split_keys.items()}
    if all(x.ndim == 2 for x in xs.values()):
        return _vector_dataset(
            path, {s: (_as_float_matrix(path, split_keys[s][0], x), ys[s]) for s, x in xs.items()}
        )
    for split, x in xs.items():
        key = split_keys[split][0]
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            raise DatasetError(
                f"{path}: key {key!r} must be a uint8 array of shape (N, H, W) or (N, H, W, C), "
                f"got {x.dtype} {x.shape}"
            )
    shapes = {x.shape[1:] for x in xs.values()}
    if len(shapes) > 1:
        raise DatasetError(f"{path}: train and test images differ in shape: {sorted(shapes)}")
    label_names, split_labels = _labels_from_arrays(path, split_keys, xs, ys)
    built = {
        split: Split(
            items=x, ids=[f"{split}-{i}" for i in range(len(x))], labels=split_labels[split]
        )
        for split, x in xs.items()
    }
    return Dataset("image", built["train"], built.get("test"), label_names, str(path))


def _labels_from_arrays(
    path: Path,
    split_keys: dict[str, tuple[str, str]],
    xs: dict[str, np.ndarray],
    ys: dict[str, np.ndarray | None],
) -> tuple[list[str], dict[str, np.ndarray | None]]:
    """Turn class-index vectors or multi-hot matrices into multi-hot uint8 labels."""
    present = {split: y for split, y in ys.items() if y is not None}
    for split, y in present.items():
        key = split_keys[split][1]
        if len(y) != len(xs[split]):
            raise DatasetError(
                f"{path}: key {key!r} has {len(y)} rows, but {split_keys[split][0]!r} has "
                f"{len(xs[split])}"
            )
        if y.ndim not in (1, 2) or not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
            raise DatasetError(
                f"{path}: key {key!r} must hold integer class ids (N,) or multi-hot (N, C)"
            )
    if not present:
        return [], dict.fromkeys(xs)
    if all(y.ndim == 1 for y in present.values()):
        classes = np.unique(np.concatenate(list(present.values())))
        names = [str(c) for c in classes.tolist()]
        labels: dict[str, np.ndarray | None] = dict.fromkeys(xs)
        for split, y in present.items():
            labels[split] = (y[:, None] == classes[None, :]).astype(np.uint8)
        return names, labels
    widths = {y.shape[1] for y in present.values() if y.ndim == 2}
    if len(widths) != 1 or any(y.ndim != 2 for y in present.values()):
        raise DatasetError(f"{path}: label arrays must all be (N,) class ids or (N, C) multi-hot")
    width = widths.pop()
    return [str(i) for i in range(width)], {
        split: (ys[split] != 0).astype(np.uint8) if ys[split] is not None else None  # type: ignore[union-attr]
        for split in xs
    }


def _image_folder_dataset(source: Path, roots: dict[str, Path]) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    class_names = sorted(
        {child.name for root in roots.values() for child in root.iterdir() if child.is_dir()}
    )
    if not class_names:
        raise DatasetError(f"{source}: expected class subfolders holding PNG/JPEG images")
    column = {name: i for i, name in enumerate(class_names)}
    built: dict[str, Split] = {}
    shape: tuple[int, ...] | None = None
    for split, root in roots.items():
        images, ids, rows = [], [], []
        for class_dir in sorted(child for child in root.iterdir() if child.is_dir()):
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    with Image.open(file) as image:
                        pixels = np.asarray(image.convert("L" if image.mode in "L1P" else "RGB"))
                except (OSError, UnidentifiedImageError) as error:
                    raise DatasetError(f"{file}: not a readable PNG/JPEG image: {error}") from error
                if shape is None:
                    shape = pixels.shape
                elif pixels.shape != shape:
                    raise DatasetError(
                        f"{file}: image shape {pixels.shape} differs from the first image's {shape}"
                    )
                images.append(pixels)
                ids.append(f"{class_dir.name}/{file.name}")
                rows.append(column[class_dir.name])
        if not images:
            raise DatasetError(f"{root}: no PNG/JPEG images in its class subfolders")
        labels = np.zeros((len(rows), len(class_names)), dtype=np.uint8)
        labels[np.arange(len(rows)), rows] = 1
        built[split] = Split(items=np.stack(images).astype(np.uint8), ids=ids, labels=labels)
    return Dataset("image", built["train"], built.get("test"), class_names, str(source))


# vectors


def _read_npy(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(f"{path}: not a readable .npy array: {error}") from error
    matrix = _as_float_matrix(path, "array", matrix)
    labels_path = path.with_name(path.name[: -len(".npy")] + ".labels.npy")
    labels = None
    if labels_path.is_file():
        try:
            labels = np.load(labels_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise DatasetError(f"{labels_path}: not a readable .npy array: {error}") from error
        labels = _check_multi_hot(labels_path, "array", labels, matrix.shape[0])
    return matrix, labels


def _read_csr_npz(path: Path) -> tuple[np.ndarray | sp.csr_matrix, np.ndarray | None]:
    arrays = _load_npz(path)
    if {"data", "indices", "indptr", "shape"} <= arrays.keys():
        return _csr_from_arrays(path, arrays)
    for key in ("x", "X"):
        if key in arrays:
            matrix = _as_float_matrix(path, key, arrays[key])
            labels = arrays.get("labels")
            checked = (
                _check_multi_hot(path, "labels", labels, matrix.shape[0])
                if labels is not None
                else None
            )
            return matrix, checked
    raise DatasetError(
        f"{path}: expected a SciPy CSR matrix (data, indices, indptr, shape) or a dense 'x' array; "
        f"found keys {sorted(arrays)}"
    )


def _csr_from_arrays(
    path: Path, arrays: dict[str, np.ndarray]
) -> tuple[sp.csr_matrix, np.ndarray | None]:
    layout = str(arrays.get("format", np.array("csr")))
    if layout != "csr":
        raise DatasetError(f"{path}: key 'format' is {layout!r}; only 'csr' matrices are supported")
    try:
        shape = tuple(int(n) for n in arrays["shape"])
        matrix = sp.csr_matrix(
            (arrays["data"].astype(np.float32), arrays["indices"], arrays["indptr"]), shape=shape
        )
        matrix.check_format(full_check=True)
    except (ValueError, TypeError, IndexError) as error:
        raise DatasetError(
            f"{path}: keys data/indices/indptr/shape are not a valid CSR matrix: {error}"
        ) from error
    labels = arrays.get("labels")
    checked = _check_multi_hot(path, "labels", labels, shape[0]) if labels is not None else None
    return matrix, checked


def _as_float_matrix(path: Path, key: str, array: np.ndarray) -> np.ndarray:
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise DatasetError(
            f"{path}: key {key!r} must be a 2-D numeric array (N, D), "
            f"got {array.dtype} {array.shape}"
        )
    matrix = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(matrix).all():
        raise DatasetError(f"{path}: key {key!r} holds NaN or infinite values")
    return matrix


def _check_multi_hot(path: Path, key: str, labels: np.ndarray, rows: int) -> np.ndarray:
    if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
        classes = np.unique(labels)
        labels = (labels[:, None] == classes[None, :]).astype(np.uint8)
    if labels.ndim != 2 or labels.shape[0] != rows:
        raise DatasetError(
            f"{path}: key {key!r} must be multi-hot of shape ({rows}, n_labels), got {labels.shape}"
        )
    return (labels != 0).astype(np.uint8)


def _vector_dataset(
    source: Path,
    splits: dict[str, tuple[np.ndarray | sp.csr_matrix, np.ndarray | None]],
) -> Dataset:
    widths = {matrix.shape[1] for matrix, _ in splits.values()}
    if len(widths) > 1:
        raise DatasetError(f"{source}: train and test vectors differ in width: {sorted(widths)}")
    label_widths = {labels.shape[1] for _, labels in splits.values() if labels is not None}
    if len(label_widths) > 1:
        raise DatasetError(
            f"{source}: train and test labels differ in width: {sorted(label_widths)}"
        )
    n_labels = label_widths.pop() if label_widths else 0
    built = {
        split: Split(
            items=matrix, ids=[f"{split}-{i}" for i in range(matrix.shape[0])], labels=labels
        )
        for split, (matrix, labels) in splits.items()
    }
    return Dataset(
        "vector", built["train"], built.get("test"), [str(i) for i in range(n_labels)], str(source)
    )


def _check_unique(source: Path, split: str, ids: list[str]) -> None:
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        duplicate = next(i for i in ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
        raise DatasetError(f"{source}: {split} split repeats id {duplicate!r}; ids must be unique")


def n_rows(items: Items) -> int:
    """Number of items in a split's `items`, whatever its type."""
    return len(items) if isinstance(items, list) else int(cast(Any, items).shape[0])


def take(items: Items, idx: np.ndarray) -> Items:
    """The rows ``idx`` of a split's `items`, in the same type."""
    if isinstance(items, list):
        return [items[i] for i in idx]
    return cast(Any, items)[idx]
