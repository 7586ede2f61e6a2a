"""PyTorch modules of Bitseek: the deep binary autoencoder, shallow feature learners, the hasher,
the denoising autoencoder."""

from models.autoencoder import AEOutput, AutoencoderConfig, DeepBinaryAutoencoder
from models.denoiser import Denoiser, DenoiserConfig, DenoiserOutput
from models.hasher import SemanticHasher, bit_statistics, pack_codes, unpack_codes
from models.psd import PredictiveSparseDecomposition
from models.rbm import RBM
from models.shallow import LayerRegularisation, ShallowAutoencoder

__all__ = [
    "AEOutput",
    "AutoencoderConfig",
    "DeepBinaryAutoencoder",
    "Denoiser",
    "DenoiserConfig",
    "DenoiserOutput",
    "LayerRegularisation",
    "PredictiveSparseDecomposition",
    "RBM",
    "SemanticHasher",
    "ShallowAutoencoder",
    "bit_statistics",
    "pack_codes",
    "unpack_codes",
]
