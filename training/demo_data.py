"""The embedded demo corpora: useful data with no network and no files outside the installation.

- `demo_images()`: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes; the UCI
  "Optical Recognition of Handwritten Digits" test set shipped inside scikit-learn, BSD-3), scaled
  from 0..16 to uint8 0..255.
- `demo_text()`: about three thousand short documents from the installed Python itself: the
  docstrings of a fixed list of standard-library modules (their classes, functions and methods),
  labelled by what the module is for ("network", "compression", "time", ...), plus the paragraphs
  of the language reference topics that `pydoc` bundles (`pydoc_data.topics`, label "language").
  Both are PSF-licensed text read at run time, not copied into this repository.

Both are deterministic for a given interpreter (docstrings differ slightly between Python versions
and platforms), de-duplicated, with unique ids and a seeded 80/20 train/test split.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from training.data import Dataset, Modality, Split

LOG = logging.getLogger(__name__)

SEED = 0
TEST_FRACTION = 0.2
MIN_WORDS = 8  # shorter docstrings ("Return self.") say nothing about a topic
MAX_CHARS = 600  # documents are short: the first paragraphs of a docstring
MIN_DOCUMENTS = 500  # fewer means docstrings were stripped (python -OO)
LANGUAGE_PARAGRAPHS = 6  # per pydoc topic, so the language reference does not swamp the rest

# Topic -> standard-library modules whose documentation carries it. Only modules that import
# cleanly without a display or extra system libraries (no tkinter, turtle, idlelib).
TEXT_TOPICS: dict[str, tuple[str, ...]] = {
    "text": ("re", "string", "textwrap", "difflib", "unicodedata", "codecs"),
    "math": ("math", "cmath", "statistics", "fractions", "decimal", "random", "numbers"),
    "files": (
        "os", "os.path", "shutil", "pathlib", "glob", "fnmatch", "tempfile", "filecmp", "io",
    ),
    "network": (
        "socket", "ssl", "http.client", "http.server", "http.cookiejar", "urllib.request",
        "urllib.parse", "smtplib", "ftplib", "ipaddress", "email.message", "email.utils", "mailbox",
    ),
    "concurrency": (
        "threading", "multiprocessing", "concurrent.futures", "asyncio", "queue", "sched",
        "subprocess", "selectors",
    ),
    "formats": (
        "json", "csv", "xml.etree.ElementTree", "xml.dom.minidom", "html.parser", "configparser",
        "plistlib", "tomllib", "pickle", "base64", "binascii", "struct",
    ),
    "debugging": (
        "unittest", "doctest", "pdb", "traceback", "inspect", "dis", "trace", "timeit",
        "cProfile", "pstats", "warnings",
    ),
    "time": ("datetime", "time", "calendar", "zoneinfo"),
    "data structures": (
        "collections", "itertools", "functools", "heapq", "bisect", "array", "enum",
        "dataclasses", "copy", "weakref", "types", "typing", "operator",
    ),
    "compression": (
        "zipfile", "tarfile", "gzip", "bz2", "lzma", "zlib", "hashlib", "hmac", "secrets",
    ),
}  # fmt: skip
LANGUAGE_TOPIC = "language"

_SPACE = re.compile(r"[ \t]+")


def demo_images() -> Dataset:
    """scikit-learn's 8x8 digits as uint8 images (N, 8, 8) in 0..255, labels "0".."9"."""
    table = np.loadtxt(_digits_file(), delimiter=",", dtype=np.float64)  # (1797, 64 pixels + 1)
    pixels, target = table[:, :-1], table[:, -1].astype(np.int64)
    images = np.rint(pixels.reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 255
    labels = np.eye(10, dtype=np.uint8)[target]
    ids = [f"digit-{i:04d}" for i in range(len(images))]
    return _split("image", images, ids, labels, [str(d) for d in range(10)], "sklearn:digits")


def demo_text() -> Dataset:
    """Short standard-library documentation snippets labelled by topic (see module docstring)."""
    label_names = [*TEXT_TOPICS, LANGUAGE_TOPIC]
    seen: set[str] = set()
    ids: list[str] = []
    texts: list[str] = []
    topics: list[int] = []

    def add(doc_id: str, text: str, topic: str) -> None:
        if len(text.split()) < MIN_WORDS or text in seen:
            return
        seen.add(text)
        ids.append(doc_id)
        texts.append(text)
        topics.append(label_names.index(topic))

    owner = {name.split(".")[0]: topic for topic, names in TEXT_TOPICS.items() for name in names}
    for topic, names in TEXT_TOPICS.items():
        for name in names:
            module = _import(name)
            if module is None:
                continue
            for doc_id, obj in _documented_objects(name, module):
                home = (getattr(obj, "__module__", None) or name).lstrip("_").split(".")[0]
                if owner.get(home, topic) != topic:  # re-exported from another topic's module
                    continue
                add(doc_id, _shorten(inspect.getdoc(obj) or ""), topic)
    for doc_id, text in _language_paragraphs():
        add(doc_id, text, LANGUAGE_TOPIC)

    if len(texts) < MIN_DOCUMENTS:
        raise RuntimeError(
            f"only {len(texts)} demo documents found; the interpreter seems to strip docstrings "
            "(python -OO or PYTHONOPTIMIZE=2): run without it"
        )
    labels = np.eye(len(label_names), dtype=np.uint8)[np.asarray(topics)]
    return _split("text", texts, ids, labels, label_names, "python:stdlib-docs")


def _digits_file() -> Path:
    """scikit-learn's bundled digits.csv.gz, found without importing sklearn.datasets (~1 s)."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise RuntimeError("scikit-learn is not installed; it bundles the demo digits")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file():
        raise RuntimeError(f"scikit-learn's bundled digits are missing: {path}")
    return path


def _import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError as err:  # e.g. a Python built without ssl or lzma
        LOG.warning("demo text: skipping module %s (%s)", name, err)
        return None


def _documented_objects(name: str, module: ModuleType) -> list[tuple[str, Any]]:
    """The module, its public classes and routines, and their public methods, in name order."""
    found: list[tuple[str, Any]] = [(name, module)]
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("_") or not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        found.append((f"{name}.{attr}", obj))
        if inspect.isclass(obj):
            for member, value in sorted(vars(obj).items()):
                if not member.startswith("_") and (
                    inspect.isroutine(value) or isinstance(value, property)
                ):
                    found.append((f"{name}.{attr}.{member}", value))
    return found


def _shorten(doc: str) -> str:
    """The first paragraphs of a docstring, whitespace-normalised, at most MAX_CHARS."""
    paragraphs = [_SPACE.sub(" ", p.strip()) for p in doc.strip().split("\n\n") if p.strip()]
    text = ""
    for paragraph in paragraphs:
        if text and len(text) + len(paragraph) + 1 > MAX_CHARS:
            break
        text = f"{text}\n{paragraph}" if text else paragraph
    if len(text) > MAX_CHARS:  # one long first paragraph: cut at a word boundary
        text = text[:MAX_CHARS].rsplit(" ", 1)[0]
    return text


def _language_paragraphs() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics  # the language reference text behind help("if")

    out = []
    for topic in sorted(topics):
        paragraphs = [p for p in topics[topic].split("\n\n") if len(p.split()) >= MIN_WORDS]
        for i, paragraph in enumerate(paragraphs[:LANGUAGE_PARAGRAPHS]):
            out.append((f"pydoc:{topic}#{i}", _shorten(paragraph)))
    return out


def _split(
    modality: Modality,
    items: list[str] | np.ndarray,
    ids: list[str],
    labels: np.ndarray,
    label_names: list[str],
    source: str,
) -> Dataset:
    n = len(ids)
    is_test = np.zeros(n, dtype=bool)
    is_test[np.random.default_rng(SEED).permutation(n)[: round(n * TEST_FRACTION)]] = True

    def take(mask: np.ndarray) -> Split:
        rows = np.flatnonzero(mask)
        part = [items[i] for i in rows] if isinstance(items, list) else items[rows]
        return Split(items=part, ids=[ids[i] for i in rows], labels=labels[rows])

    return Dataset(modality, take(~is_test), take(is_test), label_names, source)
