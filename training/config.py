"""TrainConfig: every knob of `train` in one frozen dataclass, validated with actionable messages.

Defaults are what `bitseek train --data PATH --bits N` uses; they are general (no per-dataset
tuning): hidden widths follow the modality when `hidden_dims` is left empty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from models.code_width import CODE_WIDTHS
from models.config_io import config_from_dict, config_to_dict

PRETRAIN_MODES = ("none", "autoencoder", "denoising", "contractive", "sparse", "psd", "rbm")
DEVICES = ("cpu", "cuda", "auto")
# images: Hinton & Salakhutdinov's 1000-500-250, a little better than 512-256 for 40% more time
DEFAULT_HIDDEN = {"text": (500, 500), "vector": (500, 500), "image": (1000, 500, 250)}
# images: the code-target term must stand against a reconstruction summed over thousands of pixels
# and gradient cells, or the codes keep little of the k-NN graphs on unseen photos; text's
# reconstruction is a per-word mean (benchmarks/README.md, "How hard the codes follow the graphs")
DEFAULT_CODE_TARGET_WEIGHT = {"image": 3.0}
# ... and for images it grows with that sum past this many nats of the training targets' Bernoulli
# NLL under their mean (MNIST's is 492, where 3 measured best; CIFAR-10's 2,773 gives 17, which
# lifts it from 0.27 to 0.33 p@100); smaller images keep 3, the weight measured on digits
IMAGE_RECONSTRUCTION_NATS = 490.0
# k-NN search: exact up to this many items, approximate above. Documents' graphs (tf-idf, BM25,
# word vectors) are searched exactly by sparse products whose time grows with the square of the
# items, so they turn approximate sooner than dense features': every text set of the development
# suite (at most 16,000 items) stays exact, and a 1M-document corpus, sampled to 60,000, trains
# within 30 minutes (benchmarks/README.md, "Training that samples")
DEFAULT_EXACT_KNN_ROWS = {"documents": 20000, "other": 60000}
# Fine-tuning epochs left unset: DEFAULT_EPOCHS, fewer where they would take more than
# FINETUNE_BUDGET multiply-adds (items x the unrolled autoencoder's multiply-adds per item x
# epochs), so the stage's time is bounded whatever the input's width. MNIST's 60,000 images and
# every text set of the suite keep 10; CIFAR-10's 4,836 inputs get 6, which trains it in about
# 10 minutes on one core at 0.31 p@100 against 0.33 with 10 (benchmarks/README.md, "Epochs
# within a budget")
DEFAULT_EPOCHS = 10
FINETUNE_BUDGET = 3.5e12


@dataclass(frozen=True)
class TrainConfig:
    bits: int = 32
    hidden_dims: tuple[int, ...] = ()  # empty: the modality's default (DEFAULT_HIDDEN)
    likelihood: str = ""  # empty: follows the data (bernoulli / gaussian / multinomial)
    # text and word-count vectors: terms the network reads, at most one per training item (more
    # inputs than items feeds overfitting)
    vocab_size: int = 10000
    # large training splits: every stage (vocabulary and feature statistics, k-NN graphs and their
    # spectral codes, pretraining, fine-tuning, denoiser) reads a uniform random sample of this many
    # items (seeded), and the trained network encodes the rest; see benchmarks/README.md, "Training
    # that samples", for the measurements behind the default
    sample_rows: int = 60000
    # k-NN search is exact up to this many items, approximate above (FAISS IVF on a dense
    # projection, candidates re-ranked by their exact cosine; training/neighbours.py); None: by
    # the features (DEFAULT_EXACT_KNN_ROWS), which leaves every set of the suite exact
    exact_knn_rows: int | None = None
    # greedy layer-wise pretraining
    pretrain: str = (
        "autoencoder"  # none | autoencoder | denoising | contractive | sparse | psd | rbm
    )
    pretrain_epochs: int = 2
    pretrain_rows: int = 20000  # random subset of the training split used for pretraining
    pretrain_lr: float = 1e-3  # Adam; the RBM uses rbm_lr with plain CD-1 updates
    rbm_lr: float = 0.05
    corruption: str = "masking"  # denoising: masking | gaussian | salt_pepper
    corruption_level: float = 0.3
    sparse_weight: float = 0.1  # sparse pretraining (KL to sparse_target)
    sparse_target: float = 0.05
    # ||df/dx||_F^2 with x in units of each input feature's spread, so one weight suits pixels,
    # tf-idf and hidden features alike
    contractive_weight: float = 0.1
    psd_sparsity: float = 0.1
    # fine-tuning of the unrolled deep autoencoder
    epochs: int | None = None  # None: DEFAULT_EPOCHS within FINETUNE_BUDGET (epochs_for)
    batch_size: int = 128
    lr: float = 3e-3
    code_noise: float = 0.0  # std of fixed per-item noise on the code inputs (paper: 4; see README)
    straight_through: bool = False
    dropout: float = 0.0
    neighbours: int = 20  # decoder target: mean of the item and its k nearest neighbours; 0: itself
    # the k-NN graph reads a richer tf-idf than the input (its neighbours are more often on topic):
    # every term within the document-frequency limits, up to this many
    neighbour_vocab_size: int = 200000
    # fit the code units to the k-NN graph's spectral codes; None: the modality's default
    # (DEFAULT_CODE_TARGET_WEIGHT, else 1)
    code_target_weight: float | None = None
    # text and word counts: a second k-NN graph on BM25 weights joins the tf-idf one (sum of the two
    # normalised adjacencies) before the spectral codes; the sum is steadier than either alone
    bm25_graph: bool = True
    # text and word counts: a third k-NN graph between documents' mean PPMI word vectors learned
    # from the training split (training/word_vectors.py); links on-topic documents that share few
    # terms (short texts above all)
    word_vector_graph: bool = True
    # short texts: a fourth k-NN graph on the input's top LSA directions (truncated SVD of the
    # tf-idf rows), global structure beside a term overlap too sparse to link documents on one
    # topic. It joins when the training documents' median number of distinct terms is at most
    # lsa_graph_max_terms (titles, subject lines, snippets): it lifts short titles a lot and costs
    # longer documents a little (benchmarks/README.md). lsa_graph_dims 0: never
    lsa_graph_dims: int = 200
    lsa_graph_max_terms: int = 12
    # images: a second k-NN graph on histograms of oriented gradients (training/image_features.py)
    gradient_graph: bool = True
    # images: the network reads (and its decoder rebuilds) the gradient histograms beside the
    # pixels, so the codes can follow the gradient graph on images they never saw
    gradient_inputs: bool = True
    neighbour_weight: float = 0.0  # pull each code towards a random neighbour's code
    balance_weight: float = 1.0
    decorrelation_weight: float = 1.0
    # the denoising autoencoder behind `denoise` (training/denoiser.py); trained after the hasher
    denoiser_epochs: int = 6  # 0: no denoiser, `denoise` falls back to the hashing autoencoder
    denoiser_hidden: tuple[int, ...] = (512, 256)  # encoder widths; the decoder mirrors them
    denoiser_rows: int = 60000  # random subset of the training split (bounds the time)
    denoiser_batch_size: int = 256
    denoiser_lr: float = 2e-3  # Adam, cosine decay to 0
    denoiser_noise: float = 0.5  # largest corruption drawn: noise std / masking rate
    # run
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_dims", tuple(int(d) for d in self.hidden_dims))
        object.__setattr__(self, "denoiser_hidden", tuple(int(d) for d in self.denoiser_hidden))
        CODE_WIDTHS.check(self.bits)
        if self.pretrain not in PRETRAIN_MODES:
            raise ValueError(
                f"pretrain must be one of {', '.join(PRETRAIN_MODES)}, got {self.pretrain!r}"
            )
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.likelihood not in ("", "bernoulli", "gaussian", "multinomial"):
            raise ValueError(
                "likelihood must be bernoulli, gaussian or multinomial (or empty), "
                f"got {self.likelihood!r}"
            )
        if any(d < 1 for d in self.hidden_dims):
            raise ValueError(f"hidden_dims must be positive widths, got {list(self.hidden_dims)}")
        if not self.denoiser_hidden or any(d < 1 for d in self.denoiser_hidden):
            raise ValueError(
                "denoiser_hidden must be one or more positive widths (e.g. [512, 256]), "
                f"got {list(self.denoiser_hidden)}"
            )
        if not 0.0 < self.denoiser_noise < 1.0:
            raise ValueError(
                "denoiser_noise must be in (0, 1): it is the largest masking rate and noise std "
                f"drawn, got {self.denoiser_noise}"
            )
        for name in (
            "pretrain_epochs",
            "neighbours",
            "denoiser_epochs",
            "lsa_graph_dims",
            "lsa_graph_max_terms",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        positive = ("batch_size", "vocab_size", "pretrain_rows", "neighbour_vocab_size")
        for name in (*positive, "denoiser_rows", "denoiser_batch_size", "exact_knn_rows"):
            value = getattr(self, name)
            if value is not None and value < 1:  # exact_knn_rows None: the features' default
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.epochs is not None and self.epochs < 0:  # None: by the budget
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        for name in ("lr", "pretrain_lr", "rbm_lr", "denoiser_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        non_negative = (
            *("code_noise", "neighbour_weight", "balance_weight", "decorrelation_weight"),
            "code_target_weight",  # or None: the modality's default
            *("sparse_weight", "contractive_weight", "psd_sparsity", "corruption_level"),
        )
        for name in non_negative:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if self.sample_rows < 2:
            raise ValueError(
                f"sample_rows must be >= 2 (training needs two items), got {self.sample_rows}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 < self.sparse_target < 1.0:
            raise ValueError(f"sparse_target must be in (0, 1), got {self.sparse_target}")

    def hidden_for(self, modality: str) -> tuple[int, ...]:
        return self.hidden_dims or DEFAULT_HIDDEN.get(modality, (500, 500))

    def code_target_weight_for(
        self, modality: str, reconstruction_nats: float | None = None
    ) -> float:
        """The setting, else the modality's default; for images grown with the reconstruction's
        size (``reconstruction_nats``: the targets' NLL under their mean, when known)."""
        if self.code_target_weight is not None:
            return self.code_target_weight
        weight = DEFAULT_CODE_TARGET_WEIGHT.get(modality, 1.0)
        if modality == "image" and reconstruction_nats is not None:
            weight *= max(1.0, reconstruction_nats / IMAGE_RECONSTRUCTION_NATS)
        return weight

    def epochs_for(self, items: int, layer_dims: tuple[int, ...]) -> int:
        """Fine-tuning epochs: the setting, else DEFAULT_EPOCHS cut to what FINETUNE_BUDGET
        allows ``items`` through an autoencoder of ``layer_dims`` (input to code; the decoder
        mirrors it), at least one."""
        if self.epochs is not None:
            return self.epochs
        per_item = 2 * sum(a * b for a, b in zip(layer_dims, layer_dims[1:], strict=False))
        return max(1, min(DEFAULT_EPOCHS, int(FINETUNE_BUDGET // (max(items, 1) * per_item))))

    def exact_knn_rows_for(self, documents: bool) -> int:
        """The setting, else the default for documents' (word counts) or other features."""
        if self.exact_knn_rows is not None:
            return self.exact_knn_rows
        return DEFAULT_EXACT_KNN_ROWS["documents" if documents else "other"]

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> TrainConfig:
        return config_from_dict(cls, d, source)

    @classmethod
    def from_json(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except OSError as e:
            raise ValueError(f"{path}: cannot read config ({e.strerror})") from e
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from e
        return cls.from_dict(d, str(path))

    def with_overrides(self, **changes: Any) -> TrainConfig:
        """A copy with the given (non-None) settings changed, validated again."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})
