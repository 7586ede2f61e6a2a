"""Featurisers learned on the training split only, saved with the model.

Each featuriser turns a Split's ``items`` into two float32 matrices:
- ``transform(items)``: the encoder's input (what the network sees);
- ``targets(items)``: what the decoder's likelihood scores (word counts for the multinomial
  decoder, the input itself otherwise).

Text: a vocabulary of the ``vocab_size`` terms with the highest document frequency among those in
at least ``min_df`` documents and at most ``max_df`` of them, English stop words removed; input
log(1 + tf) * idf, L2-normalised (sublinear tf-idf, the strongest simple input for text retrieval);
target the raw counts. Word-count vectors (non-negative integers, stored sparse or mostly zeros,
like TMC's) get the same treatment over their given vocabulary. Other vectors are standardised per
feature and decoded by a Gaussian. Images: pixels / 255, flattened, then their histograms of
oriented gradients, all decoded by a Bernoulli.

A featuriser serialises to a JSON-safe dict plus named numpy arrays (no pickle).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp

from training.image_features import gradient_histograms, gradient_width, has_gradient_cells
from training.rejection import ItemRejected
from training.word_table import WordTable

LOG = logging.getLogger(__name__)
Matrix: TypeAlias = np.ndarray | sp.csr_matrix
# e-mail addresses are kept whole (one term, not "john", "cs", "edu"), then words of 2+ characters:
# an address names one author or list, and split up its parts are near-meaningless common terms.
TOP_TERMS = 10  # terms `denoise` returns per document
TOKEN_PATTERN = r"(?u)[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\b\w\w+\b"
MAX_COUNT_DENSITY = 0.25  # dense integer vectors above this share of non-zeros are not word counts
_WORDS = re.compile(r"(?u)\w\w+")
_ADDRESS_CHARS = re.compile(r"(?u)[\w.+@-]*")  # every character a TOKEN_PATTERN match can hold


def text_tokens(token_pattern: str) -> Callable[[str], list[str]]:
    r"""scikit-learn's tokens for ``token_pattern`` (lowercased text, the pattern's matches),
    possibly in another order: counts are all that is made of them.

    For TOKEN_PATTERN they are found about twice as fast: its e-mail alternative, tried at every
    word, is what makes it slow, so it only runs on the stretches of address characters around
    each "@", and the rest of the text is cut into words by ``\w\w+`` alone. No match of either
    pattern holds a character outside such a stretch, and its edges are not word characters,
    so the stretches and the text between them tokenise independently (counts identical on every
    text set of the development suite; tests/training/test_features.py fuzzes the rule)."""
    if token_pattern != TOKEN_PATTERN:
        from sklearn.feature_extraction.text import CountVectorizer

        analyzer: Callable[[str], list[str]] = CountVectorizer(
            token_pattern=token_pattern
        ).build_analyzer()
        return analyzer
    whole = re.compile(TOKEN_PATTERN)

    def tokens(text: str) -> list[str]:
        if not isinstance(text, str):
            raise TypeError(f"expected text, got {type(text).__name__}")
        text = text.lower()
        out: list[str] = []
        done = 0
        for start, end in _address_stretches(text):
            out += _WORDS.findall(text, done, start)
            out += whole.findall(text, start, end)
            done = end
        out += _WORDS.findall(text, done)
        return out

    return tokens


def _address_stretches(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of the run of address characters around each "@", left to right."""
    backwards, n = text[::-1], len(text)
    at = text.find("@")
    while at >= 0:
        left = n - at  # where the characters before this "@" start in ``backwards``
        start = at - (_run_end(backwards, left) - left)
        end = _run_end(text, at + 1)
        yield start, end
        at = text.find("@", end)


def _run_end(text: str, at: int) -> int:
    """Where the run of address characters starting at ``at`` ends."""
    run = _ADDRESS_CHARS.match(text, at)
    assert run is not None  # the pattern matches the empty string
    return run.end()


def _sublinear_tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    x = counts.astype(np.float32).tocsr(copy=True)
    x.data = np.log1p(x.data)
    x = x.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ x, dtype=np.float32)


def idf_of(counts: sp.csr_matrix) -> np.ndarray:
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    return (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)  # scikit-learn's smooth idf


def lsa_rows(x: Matrix, dims: int, seed: int = 0) -> np.ndarray:
    """Rows (n, dims) on the leading singular directions of x (latent semantic analysis on
    tf-idf rows), L2-normalised: the corpus-wide structure that global linear hashes see, where
    two short texts on one topic meet even when they share no term."""
    from sklearn.utils.extmath import randomized_svd

    dims = min(dims, min(x.shape) - 1)
    u, s, _ = randomized_svd(sp.csr_matrix(x, dtype=np.float32), dims, random_state=seed)
    rows = (u * s).astype(np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def bm25_rows(counts: Matrix, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """Okapi BM25 weights of word-count rows (n, terms), each row L2-normalised; idf and the mean
    document length come from these same rows (so: training items only).

    Against sublinear tf-idf, a term's weight saturates with its count (k1) and long documents are
    discounted (b); k1 = 1.2 and b = 0.75 are the usual defaults from information retrieval.
    """
    c = sp.csr_matrix(counts, dtype=np.float64)
    n = c.shape[0]
    df = np.bincount(c.indices, minlength=c.shape[1])
    idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
    length = np.asarray(c.sum(axis=1)).ravel()
    norm_length = length / max(float(length.mean()), 1e-12)
    row_of = np.repeat(np.arange(n), np.diff(c.indptr))
    c.data = c.data * (k1 + 1) / (c.data + k1 * (1 - b + b * norm_length[row_of])) * idf[c.indices]
    norms = np.sqrt(np.asarray(c.multiply(c).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(inv) @ c, dtype=np.float32)


class TextFeaturizer:
    kind = "text"
    likelihood = "multinomial"

    def __init__(
        self, vocabulary: Sequence[str], idf: np.ndarray, token_pattern: str = TOKEN_PATTERN
    ) -> None:
        self.vocabulary = list(vocabulary)
        self.idf = np.asarray(idf, dtype=np.float32)
        self.token_pattern = token_pattern
        # scikit-learn's tokens, counted here: its own counting is a Python loop with a dict
        # update per token, 40% of featurising a post
        self._tokens = text_tokens(token_pattern)
        self._ascii_fast = token_pattern == TOKEN_PATTERN
        self._column_of = {w.encode(): i for i, w in enumerate(self.vocabulary)}
        self._table = WordTable(self._column_of) if self._ascii_fast else None

    @property
    def dim(self) -> int:
        return len(self.vocabulary)

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        vocab_size: int | None = 2000,
        min_df: int = 2,
        max_df: float = 0.5,
    ) -> TextFeaturizer:
        """vocab_size None: every term within the document-frequency limits."""
        # imported here: serving a fitted featuriser needs none of scikit-learn (2 s to import)
        from sklearn.feature_extraction.text import CountVectorizer

        texts = _check_texts(texts)
        min_df = min(min_df, max(1, len(texts) // 2))  # tiny corpora still get a vocabulary
        try:
            cv = CountVectorizer(stop_words="english", max_features=vocab_size, min_df=min_df,
                                 max_df=max_df, token_pattern=TOKEN_PATTERN)  # fmt: skip
            counts = cv.fit_transform(texts)
        except ValueError:  # every term filtered out: fall back to no document-frequency limits
            cv = CountVectorizer(
                stop_words="english", max_features=vocab_size, token_pattern=TOKEN_PATTERN
            )
            counts = cv.fit_transform(texts)
        # CountVectorizer keeps the most frequent terms by total count; that is our "most useful"
        vocab = [str(w) for w in cv.get_feature_names_out()]
        LOG.info("text vocabulary: %d terms from %d documents", len(vocab), len(texts))
        return cls(vocab, idf_of(sp.csr_matrix(counts)))

    def counts(self, items: Any) -> sp.csr_matrix:
        """Term counts (documents x vocabulary), CSR with sorted indices, as float32."""
        texts = _check_texts(items)
        # ASCII documents are tokenised and counted by the word table in one buffer; the
        # others' tokens are looked up here
        ascii_docs: list[bytes] = []
        ascii_rows: list[int] = []
        words: list[bytes] = []
        word_rows: list[int] = []
        for row, text in enumerate(texts):
            if self._table is not None and text.isascii():
                ascii_docs.append(text.encode("ascii"))
                ascii_rows.append(row)
            else:
                tokens = [token.encode() for token in self._tokens(text)]
                words += tokens
                word_rows += [row] * len(tokens)
        shape = (len(texts), self.dim)
        if self._table is not None and ascii_docs:
            ends = np.zeros(len(ascii_docs) + 1, np.int64)
            np.cumsum(np.fromiter(map(len, ascii_docs), np.int64, len(ascii_docs)), out=ends[1:])
            indptr, indices, counts = self._table.counts(b"".join(ascii_docs), ends)
            if len(ascii_docs) == len(texts):  # every row: nothing to merge
                return sp.csr_matrix((counts, indices, indptr), shape=shape)
            rows = [np.repeat(np.asarray(ascii_rows, np.int64), np.diff(indptr))]
            columns, weights = [indices], [counts]
        else:
            rows, columns, weights = [], [], []
        if words:
            each = map(self._column_of.get, words, repeat(-1))
            looked_up = np.fromiter(each, np.int32, len(words))
            known = looked_up >= 0
            rows.append(np.asarray(word_rows, np.int64)[known])
            columns.append(looked_up[known])
            weights.append(np.ones(int(known.sum()), np.float32))
        row_of = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        column_of = np.concatenate(columns) if columns else np.zeros(0, np.int32)
        weight = np.concatenate(weights) if weights else np.zeros(0, np.float32)
        out = sp.csr_matrix((weight, (row_of, column_of)), shape=shape)
        out.sum_duplicates()  # one entry per term, indices sorted: each row's counts
        return out

    def transform(self, items: Any) -> Matrix:
        return _sublinear_tfidf(self.counts(items), self.idf)

    def inputs_from_targets(self, targets: Matrix) -> Matrix:
        return _sublinear_tfidf(sp.csr_matrix(targets), self.idf)

    def targets(self, items: Any) -> Matrix:
        return self.counts(items)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return ()  # any string

    def from_reconstruction(self, recon: np.ndarray, items: Any) -> list[list[tuple[str, float]]]:
        """Per document the top terms of the reconstructed bag of words with their weights."""
        top = np.argsort(-recon, axis=1)[:, :TOP_TERMS]
        return [
            [(self.vocabulary[j], round(float(recon[i, j]), 6)) for j in row]
            for i, row in enumerate(top)
        ]

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "kind": self.kind,
            "vocabulary": self.vocabulary,
            "token_pattern": self.token_pattern,
        }
        return meta, {"idf": self.idf}


class CountVectorFeaturizer:
    """Count-valued vectors (bag-of-words over a given vocabulary): tf-idf in, counts out.

    Like the text vectoriser, only the ``vocab_size`` columns with the highest document frequency
    are kept (a 10,000-term vocabulary over a few thousand documents mostly feeds overfitting).
    """

    kind = "counts"
    likelihood = "multinomial"

    def __init__(self, idf: np.ndarray, columns: np.ndarray, n_features: int) -> None:
        self.idf = np.asarray(idf, dtype=np.float32)
        self.columns = np.asarray(columns, dtype=np.int64)  # kept input columns, ascending
        self.n_features = int(n_features)

    @property
    def dim(self) -> int:
        return len(self.idf)

    @classmethod
    def fit(cls, x: Matrix, vocab_size: int | None = None) -> CountVectorFeaturizer:
        counts = _check_counts(x, None)
        n_features = counts.shape[1]
        df = np.bincount(counts.indices, minlength=n_features)
        keep = n_features if vocab_size is None else min(vocab_size, n_features)
        columns = np.sort(np.argsort(-df, kind="stable")[:keep])
        return cls(idf_of(sp.csr_matrix(counts[:, columns])), columns, n_features)

    def targets(self, items: Any) -> Matrix:
        counts = _check_counts(items, self.n_features)
        return sp.csr_matrix(counts[:, self.columns])

    def transform(self, items: Any) -> Matrix:
        return _sublinear_tfidf(self.targets(items), self.idf)

    def inputs_from_targets(self, targets: Matrix) -> Matrix:
        return _sublinear_tfidf(sp.csr_matrix(targets), self.idf)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.n_features,)

    def from_reconstruction(self, recon: np.ndarray, items: Any) -> np.ndarray:
        """Expected counts: the reconstructed word shares times each document's length."""
        length = np.asarray(self.targets(items).sum(1)).reshape(-1, 1)
        full = np.zeros((len(recon), self.n_features), dtype=np.float32)  # dropped terms: 0
        full[:, self.columns] = recon * length
        return full

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {"kind": self.kind, "n_features": self.n_features}
        return meta, {"idf": self.idf, "columns": self.columns}


class _OwnTargets:
    """Dense features that are also the decoder's targets (pixels, standardised values)."""

    def transform(self, items: Any) -> Matrix:
        raise NotImplementedError

    def targets(self, items: Any) -> Matrix:
        return self.transform(items)

    def inputs_from_targets(self, targets: Matrix) -> Matrix:
        return targets


class VectorFeaturizer(_OwnTargets):
    """Real-valued vectors: per-feature standardisation, Gaussian decoder.

    A feature's scale is its standard deviation, but never below the median one's: dividing a
    nearly constant feature (a border pixel, a rare flag) by its tiny spread would make its rare
    values dominate every distance.
    """

    kind = "vector"
    likelihood = "gaussian"

    def __init__(self, mean: np.ndarray, scale: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)

    @property
    def dim(self) -> int:
        return len(self.mean)

    @classmethod
    def fit(cls, x: Matrix) -> VectorFeaturizer:
        x = _dense(_check_vectors(x, None))
        std = x.std(0)
        varying = std > 1e-8
        floor = float(np.median(std[varying])) if varying.any() else 1.0
        return cls(x.mean(0), np.maximum(std, floor))

    def transform(self, items: Any) -> Matrix:
        x = _dense(_check_vectors(items, self.dim))
        with np.errstate(over="ignore"):  # refused below, naming the item
            z = ((x - self.mean) / self.scale).astype(np.float32)
        # the network turns an infinite feature into NaN activations: a code of nothing
        _check_finite_rows(z, "its values are so far from the training data that they overflow")
        return z

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def from_reconstruction(self, recon: np.ndarray, items: Any) -> np.ndarray:
        return (recon * self.scale + self.mean).astype(np.float32)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"kind": self.kind}, {"mean": self.mean, "scale": self.scale}


class ImageFeaturizer(_OwnTargets):
    """uint8 images (N, H, W[, C]) -> pixels / 255 flattened, then (``gradients``) the image's
    histograms of oriented gradients (`training.image_features`), which stay close under small
    shifts and lighting changes where pixels drift apart; Bernoulli decoder (both lie in [0, 1])."""

    kind = "image"
    likelihood = "bernoulli"

    def __init__(self, shape: Sequence[int], gradients: bool = False) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.gradients = gradients and has_gradient_cells(self.shape)

    @property
    def n_pixels(self) -> int:
        return int(np.prod(self.shape))

    @property
    def dim(self) -> int:
        return self.n_pixels + (gradient_width(self.shape) if self.gradients else 0)

    @classmethod
    def fit(cls, images: np.ndarray, gradients: bool = False) -> ImageFeaturizer:
        images = np.asarray(images)
        if images.ndim not in (3, 4):
            raise ValueError(
                f"images must have shape (N, H, W) or (N, H, W, C), got {images.shape}"
            )
        return cls(images.shape[1:], gradients)

    def transform(self, items: Any) -> Matrix:
        x = np.asarray(items)
        if x.shape[1:] != self.shape:
            raise ValueError(f"images must have shape (n, {', '.join(map(str, self.shape))}), "
                             f"got {x.shape}")  # fmt: skip
        scale = 255.0 if x.dtype == np.uint8 or x.max(initial=0) > 1.0 else 1.0
        pixels = (x.reshape(len(x), -1).astype(np.float32) / scale).clip(0.0, 1.0)
        return self.with_gradients(pixels) if self.gradients else pixels

    def with_gradients(self, pixels: np.ndarray) -> np.ndarray:
        """Flattened pixels in [0, 1] -> ``transform``'s rows: the pixels, then their histograms."""
        return np.concatenate([pixels, gradient_histograms(pixels, self.shape)], axis=1)

    def pixels(self, features: np.ndarray) -> np.ndarray:
        """The pixel columns of ``transform``'s rows (or of a reconstruction of them)."""
        return features[:, : self.n_pixels]

    def gradient_rows(self, features: np.ndarray) -> np.ndarray:
        """The gradient histograms of ``transform``'s rows, read or computed."""
        if self.gradients:
            return features[:, self.n_pixels :]
        return gradient_histograms(self.pixels(features), self.shape)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.shape

    def from_reconstruction(self, recon: np.ndarray, items: Any) -> np.ndarray:
        return self.pixels(recon).reshape(len(recon), *self.shape).clip(0.0, 1.0)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"kind": self.kind, "shape": list(self.shape), "gradients": self.gradients}, {}


Featurizer = TextFeaturizer | CountVectorFeaturizer | VectorFeaturizer | ImageFeaturizer


def fit_featurizer(
    modality: str,
    items: Any,
    vocab_size: int = 2000,
    likelihood: str = "",
    image_gradients: bool = False,
) -> Featurizer:
    """Learn the featuriser for ``modality`` from the training split's items.

    Vectors are word counts when ``likelihood`` is "multinomial", real values when it is another
    one, and otherwise when `looks_like_word_counts` says so. Images read their gradient
    histograms beside the pixels with ``image_gradients``.
    """
    if modality == "image":
        return ImageFeaturizer.fit(items, image_gradients)
    fit = _FITTERS.get(modality)
    if fit is None:
        raise ValueError(f"unknown modality {modality!r}; expected text, image or vector")
    return fit(items, vocab_size, likelihood)


def _fit_vectors(items: Any, vocab_size: int, likelihood: str) -> Featurizer:
    counts = looks_like_word_counts(items) if not likelihood else likelihood == "multinomial"
    if counts and not is_count_valued(items):
        raise ValueError(
            "likelihood 'multinomial' needs word counts (non-negative integers) in every row"
        )
    if counts:
        return CountVectorFeaturizer.fit(items, vocab_size=vocab_size)
    return VectorFeaturizer.fit(items)


_FITTERS: dict[str, Callable[[Any, int, str], Featurizer]] = {
    "text": lambda items, vocab_size, _: TextFeaturizer.fit(items, vocab_size=vocab_size),
    "vector": _fit_vectors,
}


def featurizer_from_state(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Featurizer:
    kind = meta.get("kind")
    if kind == "text":
        return TextFeaturizer(meta["vocabulary"], arrays["idf"], meta["token_pattern"])
    if kind == "counts":
        return CountVectorFeaturizer(arrays["idf"], arrays["columns"], meta["n_features"])
    if kind == "vector":
        return VectorFeaturizer(arrays["mean"], arrays["scale"])
    if kind == "image":
        return ImageFeaturizer(meta["shape"], bool(meta.get("gradients", False)))
    raise ValueError(f"unknown featuriser kind {kind!r} in the saved model")


def is_count_valued(x: Matrix) -> bool:
    """True when every stored entry is a non-negative integer."""
    values = np.asarray(x.data if isinstance(x, sp.spmatrix) else x).ravel()
    if values.size == 0:
        return False
    return bool(np.all(values >= 0) and np.all(np.floor(values) == values))


def looks_like_word_counts(x: Matrix) -> bool:
    """Non-negative integers stored sparse, or dense with at most MAX_COUNT_DENSITY of the entries
    non-zero: a document uses few of its vocabulary's terms, while dense integer data (pixel
    intensities, ratings, measurements) is better standardised than read as a bag of words."""
    if not is_count_valued(x):
        return False
    if isinstance(x, sp.spmatrix):
        return True
    dense = np.asarray(x)
    return bool(np.count_nonzero(dense) <= MAX_COUNT_DENSITY * dense.size)


def _check_texts(items: Any) -> list[str]:
    if isinstance(items, str) or not isinstance(items, Sequence):
        raise ValueError("text items must be a list of strings")
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise ValueError(f"text item {i} is {type(t).__name__}, expected a string")
    return list(items)


def _check_vectors(x: Any, dim: int | None) -> Matrix:
    if not sp.issparse(x):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"vectors must be a 2-D array (n, dim), got shape {x.shape}")
        _check_finite_rows(x, "it contains NaN or infinite values")
    if dim is not None and x.shape[1] != dim:
        raise ValueError(f"vectors must have {dim} columns, got {x.shape[1]}")
    return x


def _check_counts(x: Any, dim: int | None) -> sp.csr_matrix:
    """Word counts as float32 CSR; a negative count would vanish as log1p's NaN in tf-idf."""
    counts = sp.csr_matrix(_check_vectors(x, dim), dtype=np.float32)
    bad = ~np.isfinite(counts.data) | (counts.data < 0)
    if bad.any():
        row = int(np.searchsorted(counts.indptr, np.argmax(bad), side="right")) - 1
        raise ItemRejected(row, "word counts must be finite and non-negative")
    return counts


def _check_finite_rows(x: np.ndarray, reason: str) -> None:
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        raise ItemRejected(int(np.argmin(finite)), reason)


def _dense(x: Matrix) -> np.ndarray:
    return np.asarray(x.toarray() if isinstance(x, sp.spmatrix) else x, dtype=np.float32)
