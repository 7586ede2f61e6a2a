import numpy as np
import pytest
import scipy.sparse as sp
import torch

from models.autoencoder import AutoencoderConfig, DeepBinaryAutoencoder
from models.hasher import SemanticHasher, bit_statistics, pack_codes, unpack_codes


@pytest.fixture
def hasher() -> SemanticHasher:
    torch.manual_seed(0)
    cfg = AutoencoderConfig(input_dim=10, hidden_dims=(8,), n_bits=16, dropout=0.5)
    return SemanticHasher(DeepBinaryAutoencoder(cfg))


def test_packbits_order_first_bit_is_high_bit_of_byte_zero() -> None:
    bits = np.zeros((2, 16), dtype=np.uint8)
    bits[0, 0] = 1
    bits[1, 15] = 1
    packed = pack_codes(bits)
    assert packed.dtype == np.uint8 and packed.shape == (2, 2)
    assert packed[0].tolist() == [128, 0] and packed[1].tolist() == [0, 1]
    np.testing.assert_array_equal(unpack_codes(packed, 16), bits)


def test_unpack_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        unpack_codes(np.zeros((3, 3), np.uint8), 16)


def test_encode_is_deterministic_and_consistent(hasher: SemanticHasher) -> None:
    x = np.random.default_rng(0).random((50, 10), dtype=np.float32)
    a, b = hasher.encode(x), hasher.encode(x)  # dropout must be off in eval
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50, 2) and a.dtype == np.uint8
    probs = hasher.encode_continuous(x)
    assert probs.shape == (50, 16) and probs.dtype == np.float32
    assert ((probs >= 0) & (probs <= 1)).all()
    np.testing.assert_array_equal(unpack_codes(a, 16), (probs > 0.5).astype(np.uint8))


def test_decode_and_denoise_shapes(hasher: SemanticHasher) -> None:
    x = np.random.default_rng(1).random((7, 10), dtype=np.float32)
    assert hasher.decode(hasher.encode(x)).shape == (7, 10)
    out = hasher.denoise(x)
    assert out.shape == (7, 10) and ((out >= 0) & (out <= 1)).all()


def test_bad_input_shape_is_a_clear_error(hasher: SemanticHasher) -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 10\)"):
        hasher.encode(np.zeros((3, 9), np.float32))


def test_state_round_trip_gives_identical_codes(hasher: SemanticHasher) -> None:
    x = np.random.default_rng(2).random((20, 10), dtype=np.float32)
    again = SemanticHasher.from_state(hasher.state())
    np.testing.assert_array_equal(again.encode(x), hasher.encode(x))


def test_bit_statistics_flags_constant_bits() -> None:
    rng = np.random.default_rng(0)
    bits = (rng.random((1000, 8)) < 0.5).astype(np.uint8)
    bits[:, 2] = 0
    bits[:, 5] = 1
    stats = bit_statistics(bits)
    assert stats["dead_bits"] == [2, 5] and stats["n_dead_bits"] == 2
    assert len(stats["bit_rates"]) == 8 and stats["bit_rates"][5] == 1.0


def test_sparse_rows_encode_like_their_dense_copy(hasher: SemanticHasher) -> None:
    rng = np.random.default_rng(0)
    dense = (rng.random((2500, 10)) * (rng.random((2500, 10)) < 0.3)).astype(np.float32)
    small_batches = SemanticHasher(hasher.model, batch_size=64)  # many densified batches
    np.testing.assert_array_equal(small_batches.encode(sp.csr_matrix(dense)), hasher.encode(dense))
    np.testing.assert_allclose(
        small_batches.encode_continuous(sp.csr_matrix(dense)),
        hasher.encode_continuous(dense),
        atol=1e-6,  # the sparse product adds in another order: a last bit may differ
    )
    with pytest.raises(ValueError, match=r"shape \(n, 10\)"):
        hasher.encode(sp.csr_matrix((3, 7), dtype=np.float32))


def test_sparse_rows_follow_weights_changed_in_place() -> None:
    """The sparse path keeps a transposed copy of the first layer: a weight update (training,
    a loaded state) must not leave it stale. Also for an encoder with no hidden layer."""
    rng = np.random.default_rng(3)
    rows = sp.random(40, 12, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    for hidden in ((9,), ()):
        torch.manual_seed(1)
        hasher = SemanticHasher(DeepBinaryAutoencoder(AutoencoderConfig(12, hidden, n_bits=8)))
        before = hasher.encode_continuous(rows)
        with torch.no_grad():
            hasher.model.encoder[0].weight.mul_(-3.0)
        after = hasher.encode_continuous(rows)
        assert not np.allclose(after, before)
        np.testing.assert_allclose(after, hasher.encode_continuous(rows.toarray()), atol=1e-6)


def test_encoder_jacobian_matches_finite_differences_even_under_inference_mode() -> None:
    """The web page's tangent directions: d sigmoid(code logits) / d input, computed with
    autograd back on although the server runs every model call under inference_mode."""
    torch.manual_seed(0)
    hasher = SemanticHasher(DeepBinaryAutoencoder(AutoencoderConfig(6, (5,), n_bits=8)))
    x = np.random.RandomState(0).rand(2, 6).astype(np.float32)
    with torch.inference_mode():
        jac = hasher.encoder_jacobian(x)
    assert jac.shape == (2, 8, 6)
    eps = 1e-3
    for j in range(6):
        step = np.zeros_like(x)
        step[:, j] = eps
        numeric = (hasher.encode_continuous(x + step) - hasher.encode_continuous(x - step)) / (
            2 * eps
        )
        np.testing.assert_allclose(jac[:, :, j], numeric, atol=2e-3)
