"""Dataset readers: every shared dataset reads, every malformed input names its problem."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from PIL import Image

from training.data import DatasetError, load_dataset

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def write_jsonl(path: Path, records: list[object]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


@pytest.mark.parametrize(
    ("relative", "modality", "n_train", "n_test", "n_labels"),
    [
        ("text/20newsgroups", "text", 11314, 7532, 20),
        ("images/mnist.npz", "image", 60000, 10000, 10),
        ("vectors/tmc", "vector", 2847, 2847, 22),
    ],
)
def test_reads_every_shared_dataset(relative, modality, n_train, n_test, n_labels) -> None:
    dataset = load_dataset(SHARED / relative)
    assert dataset.modality == modality
    assert len(dataset.train) == n_train and dataset.test is not None
    assert len(dataset.test) == n_test
    assert len(dataset.label_names) == n_labels
    for split in (dataset.train, dataset.test):
        assert split.labels is not None and split.labels.shape == (len(split), n_labels)
        assert split.labels.dtype == np.uint8 and split.labels.sum(axis=1).min() >= 1
        assert len(set(split.ids)) == len(split.ids)


def test_single_text_file_is_all_train_and_labels_are_multi_hot(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "docs.jsonl.gz",
        [
            {"id": "a", "text": "cats purr", "labels": ["pets"]},
            {"id": "b", "text": "dogs bark", "labels": ["pets", "loud"]},
            {"id": "c", "text": "no labels here"},
        ],
    )
    dataset = load_dataset(path)
    assert dataset.modality == "text" and dataset.test is None
    assert dataset.train.items == ["cats purr", "dogs bark", "no labels here"]
    assert dataset.label_names == ["loud", "pets"]
    assert dataset.train.labels is not None
    assert dataset.train.labels.tolist() == [[0, 1], [1, 1], [0, 0]]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad\.jsonl:2: not valid JSON"),
        ('["a list"]', r"bad\.jsonl:2: expected a JSON object"),
        ('{"id": "x"}', r"bad\.jsonl:2: key 'text' must be a string"),
        ('{"text": "t", "labels": "pets"}', r"bad\.jsonl:2: key 'labels' must be a list"),
        ('{"id": "a", "text": "again"}', r"repeats id 'a'"),
    ],
)
def test_corrupt_text_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = write_jsonl(tmp_path / "bad.jsonl", [{"id": "a", "text": "fine"}, line])
    with pytest.raises(DatasetError, match=message):
        load_dataset(path)


def test_truncated_gzip_is_a_dataset_error(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl.gz", [{"text": f"doc {i}"} for i in range(500)])
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(good.read_bytes()[:40])
    with pytest.raises(DatasetError, match="broken.jsonl.gz"):
        load_dataset(broken)


def test_image_npz_with_single_split_and_channels(tmp_path: Path) -> None:
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, size=(6, 4, 5, 3)).astype(np.uint8)
    np.savez(tmp_path / "imgs.npz", x=x, y=np.array([0, 1, 2, 0, 1, 2]))
    dataset = load_dataset(tmp_path / "imgs.npz")
    assert dataset.modality == "image" and dataset.test is None
    assert dataset.train.items.shape == (6, 4, 5, 3)
    assert dataset.label_names == ["0", "1", "2"]


def test_image_npz_wrong_dtype_names_key(tmp_path: Path) -> None:
    np.savez(tmp_path / "imgs.npz", x_train=np.zeros((3, 4, 4), dtype=np.float64))
    with pytest.raises(DatasetError, match="'x_train' must be a uint8 array"):
        load_dataset(tmp_path / "imgs.npz")


def test_image_folder_in_class_subfolders(tmp_path: Path) -> None:
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(2):
            pixels = np.full((8, 8), 40 * i + (label == "dog") * 100, dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    (tmp_path / "dog" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png"):
        load_dataset(tmp_path)
    (tmp_path / "dog" / "broken.png").unlink()
    dataset = load_dataset(tmp_path, modality="image")
    assert dataset.train.items.shape == (4, 8, 8)
    assert dataset.label_names == ["cat", "dog"]
    assert dataset.train.ids[0] == "cat/0.png"


def test_csr_and_dense_vectors(tmp_path: Path) -> None:
    matrix = sp.random(5, 7, density=0.5, format="csr", random_state=0, dtype=np.float32)
    labels = np.eye(5, 3, dtype=np.uint8)
    np.savez(
        tmp_path / "train.npz",
        data=matrix.data,
        indices=matrix.indices,
        indptr=matrix.indptr,
        shape=np.array(matrix.shape),
        format=np.array("csr"),
        labels=labels,
    )
    np.save(tmp_path / "test.npy", matrix.toarray())
    np.save(tmp_path / "test.labels.npy", labels)
    dataset = load_dataset(tmp_path)
    assert dataset.modality == "vector"
    assert sp.issparse(dataset.train.items)
    assert np.allclose(dataset.train.items.toarray(), matrix.toarray())
    assert dataset.test is not None and dataset.test.items.shape == (5, 7)
    assert dataset.test.labels is not None and dataset.test.labels.tolist() == labels.tolist()


def test_vector_width_mismatch_and_nan_are_rejected(tmp_path: Path) -> None:
    np.save(tmp_path / "train.npy", np.zeros((3, 4), dtype=np.float32))
    np.save(tmp_path / "test.npy", np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(DatasetError, match="differ in width"):
        load_dataset(tmp_path)
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0]]))
    with pytest.raises(DatasetError, match="NaN"):
        load_dataset(tmp_path / "nan.npy")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("x.csv", b"1,2", "unsupported file type"),
        ("x.npz", b"garbage", "not a readable .npz"),
        ("x.npy", b"garbage", "not a readable .npy"),
    ],
)
def test_unreadable_files_are_named(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path / name)


def test_missing_path_and_wrong_modality(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(tmp_path / "absent.jsonl")
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": "hello"}])
    with pytest.raises(DatasetError, match="holds text data, but modality 'image'"):
        load_dataset(path, modality="image")
