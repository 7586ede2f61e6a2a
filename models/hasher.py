"""SemanticHasher: a fitted deep binary autoencoder behind array-in, array-out verbs.

Codes at the boundary are packed uint8 arrays of shape (n, n_bits // 8) in ``numpy.packbits``
order (bit 0 of the code is the high bit of byte 0).
"""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

import numpy as np
import scipy.sparse as sp
import torch

from models.autoencoder import AutoencoderConfig, DeepBinaryAutoencoder
from models.likelihoods import mean_reconstruction

LOG = logging.getLogger(__name__)
Inputs: TypeAlias = np.ndarray | sp.csr_matrix
DEAD_BIT_RATE = 0.01  # a bit on (or off) for fewer than 1% of items carries almost no information


def pack_codes(bits: np.ndarray) -> np.ndarray:
    """(n, n_bits) of {0, 1} -> (n, n_bits // 8) uint8, numpy.packbits order."""
    return np.packbits(np.asarray(bits, dtype=np.uint8), axis=1)


def unpack_codes(codes: np.ndarray, n_bits: int) -> np.ndarray:
    """(n, n_bits // 8) uint8 -> (n, n_bits) uint8 of {0, 1}."""
    codes = np.asarray(codes)
    if codes.dtype != np.uint8 or codes.ndim != 2 or codes.shape[1] * 8 != n_bits:
        raise ValueError(
            f"codes must be uint8 of shape (n, {n_bits // 8}), got {codes.dtype} {codes.shape}"
        )
    return np.unpackbits(codes, axis=1, count=n_bits)


def bit_statistics(bits: np.ndarray) -> dict[str, Any]:
    """Per-bit activation rates of unpacked codes (n, n_bits) and the (nearly) constant bits."""
    rates = np.asarray(bits, dtype=np.float64).mean(0) if len(bits) else np.zeros(bits.shape[1])
    dead = [int(i) for i in np.flatnonzero(np.minimum(rates, 1 - rates) < DEAD_BIT_RATE)]
    return {
        "bit_rates": [round(float(r), 4) for r in rates],
        "dead_bits": dead,
        "n_dead_bits": len(dead),
    }


class SemanticHasher:
    def __init__(
        self, model: DeepBinaryAutoencoder, device: str = "cpu", batch_size: int = 1024
    ) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self._first_t: tuple[tuple[int, int], np.ndarray] | None = None

    @property
    def config(self) -> AutoencoderConfig:
        return self.model.config

    @property
    def n_bits(self) -> int:
        return self.model.config.n_bits

    def to(self, device: str) -> SemanticHasher:
        return SemanticHasher(self.model, device, self.batch_size)

    def _check(self, x: Inputs) -> Inputs:
        """Dense arrays or SciPy sparse rows (densified a batch at a time: a dense copy of 100k
        documents x 10k terms would need 4 GB)."""
        x = sp.csr_matrix(x, dtype=np.float32) if sp.issparse(x) else np.asarray(x, np.float32)
        want = self.config.input_dim
        if x.ndim != 2 or x.shape[1] != want:
            raise ValueError(f"expected an array of shape (n, {want}), got {x.shape}")
        return x

    @torch.no_grad()
    def _batched(self, x: Inputs, fn: Any, width: int) -> np.ndarray:
        """``fn`` on each batch of rows (an array or SciPy sparse rows), as float32 (n, width)."""
        n = x.shape[0]
        out = np.empty((n, width), dtype=np.float32)
        for start in range(0, n, self.batch_size):
            rows = x[start : start + self.batch_size]
            out[start : start + rows.shape[0]] = fn(rows).float().cpu().numpy()
        return out

    def _dense(self, rows: Inputs) -> torch.Tensor:
        dense = rows if isinstance(rows, np.ndarray) else rows.toarray()
        return torch.from_numpy(np.ascontiguousarray(dense)).to(self.device)

    def _code_logits(self, rows: Inputs) -> torch.Tensor:
        """The encoder's code logits for a batch. Sparse rows on the CPU skip the dense copy:
        their first layer is a sparse product with the transposed weights, 10-15x faster for
        documents over a 10,000-term vocabulary (benchmarks/README.md, "Bulk import")."""
        if not sp.issparse(rows) or self.device != "cpu":
            return self.model.encode_layers(self._dense(rows))[1]
        weight_t, bias = self._first_layer_t()
        first = torch.from_numpy(np.asarray(rows @ weight_t, dtype=np.float32)) + bias
        return self.model.encode_from_first(first)[1]

    def _first_layer_t(self) -> tuple[np.ndarray, torch.Tensor]:
        """The first encoder layer's weights as a C-ordered (input_dim, width) array, made again
        when the weights change (their version counter moves with every in-place update)."""
        layer = self.model.encoder[0]
        assert isinstance(layer, torch.nn.Linear)
        key = (layer.weight._version, layer.weight.data_ptr())
        if self._first_t is None or self._first_t[0] != key:
            weight_t = np.ascontiguousarray(layer.weight.detach().cpu().numpy().T)
            self._first_t = (key, weight_t)
        return self._first_t[1], layer.bias.detach()

    def encode_continuous(self, x: Inputs) -> np.ndarray:
        """(n, input_dim) float -> (n, n_bits) float32 code activations in [0, 1]."""
        x = self._check(x)
        return self._batched(x, lambda rows: torch.sigmoid(self._code_logits(rows)), self.n_bits)

    def encode_bits(self, x: Inputs) -> np.ndarray:
        """(n, input_dim) -> (n, n_bits) uint8 of {0, 1}; a bit is on when its logit is > 0."""
        x = self._check(x)
        logits = self._batched(x, self._code_logits, self.n_bits)
        return (logits > 0).astype(np.uint8)

    def encode(self, x: Inputs) -> np.ndarray:
        """(n, input_dim) -> packed uint8 (n, n_bits // 8)."""
        return pack_codes(self.encode_bits(x))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Packed codes (n, n_bits // 8) -> (n, input_dim) mean reconstruction."""
        bits = unpack_codes(codes, self.n_bits).astype(np.float32)
        return self._batched(
            bits, lambda rows: self._decode_mean(self._dense(rows)), self.config.input_dim
        )

    def denoise(self, x: Inputs) -> np.ndarray:
        """Reconstruction of (possibly corrupted) inputs through the continuous code units;
        the binary code would throw away detail that the decoder can use."""
        x = self._check(x)
        return self._batched(
            x, lambda rows: self._decode_mean(torch.sigmoid(self._code_logits(rows))),
            self.config.input_dim,
        )  # fmt: skip

    def encoder_jacobian(self, x: np.ndarray) -> np.ndarray:
        """(n, input_dim) -> (n, n_bits, input_dim): the derivative of the code units'
        activations sigmoid(logits) with respect to the input at each row, the encoder's local
        linear map. Its leading right singular vectors are the input directions the code is most
        sensitive to: the tangent directions of the book's contractive-autoencoder figures."""
        checked = self._check(x)
        rows = checked.toarray() if isinstance(checked, sp.csr_matrix) else np.asarray(checked)
        out = np.empty((len(rows), self.n_bits, self.config.input_dim), dtype=np.float32)

        def units(v: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.model.encode_layers(v[None])[1])[0]  # (n_bits,)

        # the server runs model calls under inference_mode; autograd must be back on here
        with torch.inference_mode(False), torch.enable_grad():
            for i, row in enumerate(rows):
                xb = torch.tensor(row, dtype=torch.float32, device=self.device)
                jac = torch.autograd.functional.jacobian(units, xb)  # (n_bits, input_dim)
                out[i] = jac.detach().float().cpu().numpy()
        return out

    def _decode_mean(self, code: torch.Tensor) -> torch.Tensor:
        return mean_reconstruction(self.model.decode_logits(code), self.config.likelihood)

    def state(self) -> dict[str, Any]:
        """What a checkpoint needs: the config travels with the weights."""
        return {"config": self.config.to_dict(), "state_dict": self.model.state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: str = "cpu") -> SemanticHasher:
        model = DeepBinaryAutoencoder(AutoencoderConfig.from_dict(state["config"]))
        model.load_state_dict(state["state_dict"])
        return cls(model, device)
