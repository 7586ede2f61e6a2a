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
        n = x.shape[0]
        out = np.empty((n, width), dtype=np.float32)
        for start in range(0, n, self.batch_size):
            rows = x[start : start + self.batch_size]
            dense = rows if isinstance(rows, np.ndarray) else rows.toarray()
            xb = torch.from_numpy(np.ascontiguousarray(dense)).to(self.device)
            out[start : start + len(xb)] = fn(xb).float().cpu().numpy()
        return out

    def encode_continuous(self, x: Inputs) -> np.ndarray:
        """(n, input_dim) float -> (n, n_bits) float32 code activations in [0, 1]."""
        x = self._check(x)
        return self._batched(
            x, lambda xb: torch.sigmoid(self.model.encode_layers(xb)[1]), self.n_bits
        )

    def encode_bits(self, x: Inputs) -> np.ndarray:
        """(n, input_dim) -> (n, n_bits) uint8 of {0, 1}; a bit is on when its logit is > 0."""
        x = self._check(x)
        logits = self._batched(x, lambda xb: self.model.encode_layers(xb)[1], self.n_bits)
        return (logits > 0).astype(np.uint8)

    def encode(self, x: Inputs) -> np.ndarray:
        """(n, input_dim) -> packed uint8 (n, n_bits // 8)."""
        return pack_codes(self.encode_bits(x))

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Packed codes (n, n_bits // 8) -> (n, input_dim) mean reconstruction."""
        bits = unpack_codes(codes, self.n_bits).astype(np.float32)
        return self._batched(bits, self._decode_mean, self.config.input_dim)

    def denoise(self, x: Inputs) -> np.ndarray:
        """Reconstruction of (possibly corrupted) inputs through the continuous code units;
        the binary code would throw away detail that the decoder can use."""
        x = self._check(x)
        return self._batched(
            x, lambda xb: self._decode_mean(torch.sigmoid(self.model.encode_layers(xb)[1])),
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
