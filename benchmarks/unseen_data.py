"""Write labelled datasets that are not in `../shared/data`, from what scikit-learn ships on disk.

The defaults are chosen on 20 Newsgroups, MNIST and TMC; these check that they hold on data they
were not chosen on, in the layouts `bitseek train --data` reads:
- `digits.npz`: scikit-learn's 8x8 handwritten digits (1,797, 10 classes; intensities 0-16 scaled
  to uint8 0-255) as images, split 1,297 train / 500 test;
- `digits_vectors/`: the same digits as real-valued 64-d vectors (dense `.npy` + `.labels.npy`);
- `breast_cancer/`: the Wisconsin diagnostic data, 569 real-valued 30-d vectors on very different
  scales, 2 classes, split 419 / 150;
- with `--newsgroups DIR` (20 Newsgroups as in `../shared/data`), two harder text corpora made from
  it: `20ng_bodies/` (headers, quoted lines and "In article ... writes:" attributions removed, so
  no e-mail address or subject names the thread) and `20ng_subjects/` (the subject line alone,
  "Re:" removed: short texts like titles).

    .venv/bin/python benchmarks/unseen_data.py --out /tmp/bitseek-unseen
    .venv/bin/python benchmarks/quality.py --name unseen_digits \
        --data /tmp/bitseek-unseen/digits.npz --bits 16 32 64
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits


def split(n: int, n_test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return order[n_test:], order[:n_test]


def one_hot(y: np.ndarray) -> np.ndarray:
    return np.eye(int(y.max()) + 1, dtype=np.uint8)[y]


def write_vectors(folder: Path, x: np.ndarray, y: np.ndarray, n_test: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    train, test = split(len(x), n_test)
    for name, rows in (("train", train), ("test", test)):
        np.save(folder / f"{name}.npy", x[rows].astype(np.float32))
        np.save(folder / f"{name}.labels.npy", one_hot(y)[rows])


ATTRIBUTION = re.compile(r"(^in article|writes:$|wrote:$|says:$)", re.IGNORECASE)


def body_of(post: str) -> str:
    """The post without its header block, quoted lines and attribution lines."""
    _, _, body = post.partition("\n\n")
    lines = [line for line in body.splitlines() if not line.lstrip().startswith((">", "|"))]
    return "\n".join(line for line in lines if not ATTRIBUTION.search(line.strip()))


def subject_of(post: str) -> str:
    for line in post.splitlines():
        if line.startswith("Subject:"):
            return re.sub(r"^(re:\s*)+", "", line[len("Subject:") :].strip(), flags=re.IGNORECASE)
    return ""


def write_newsgroups(source: Path, out: Path) -> None:
    for name, part in (("20ng_bodies", body_of), ("20ng_subjects", subject_of)):
        (out / name).mkdir(parents=True, exist_ok=True)
        for split in ("train", "test"):
            with gzip.open(source / f"{split}.jsonl.gz", "rt") as f:
                rows = [json.loads(line) for line in f]
            kept = [{**row, "text": part(row["text"])} for row in rows]
            with open(out / name / f"{split}.jsonl", "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in kept if row["text"].strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the datasets to")
    parser.add_argument("--newsgroups", type=Path, help="20 Newsgroups folder (train.jsonl.gz ...)")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)  # 0-16 -> 0-256, clipped
    train, test = split(len(images), 500)
    np.savez(out / "digits.npz", x_train=images[train], y_train=digits.target[train],
             x_test=images[test], y_test=digits.target[test])  # fmt: skip
    write_vectors(out / "digits_vectors", digits.data, digits.target, 500)
    cancer = load_breast_cancer()
    write_vectors(out / "breast_cancer", cancer.data, cancer.target, 150)
    if args.newsgroups:
        write_newsgroups(args.newsgroups, out)
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} under {out}")


if __name__ == "__main__":
    main()
