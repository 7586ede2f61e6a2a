import numpy as np
import pytest
import torch

from models.autoencoder import AutoencoderConfig, DeepBinaryAutoencoder


def _model(likelihood: str = "bernoulli", **kw) -> DeepBinaryAutoencoder:
    torch.manual_seed(0)
    return DeepBinaryAutoencoder(
        AutoencoderConfig(input_dim=20, hidden_dims=(12,), n_bits=8, likelihood=likelihood, **kw)
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_bits": 12}, "multiple of 8.*try 16"),
        ({"n_bits": 0}, "multiple of 8"),
        ({"likelihood": "poisson"}, "likelihood must be one of"),
        ({"dropout": 1.0}, "dropout"),
        ({"hidden_dims": (0,)}, "hidden_dims"),
        ({"code_noise": -1.0}, "code_noise"),
        ({"sparse_kind": "l2"}, "sparse_kind"),
    ],
)
def test_bad_config_raises_actionable_value_error(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        AutoencoderConfig(input_dim=10, **kwargs)


def test_config_dict_round_trip_and_unknown_keys() -> None:
    cfg = AutoencoderConfig(input_dim=7, hidden_dims=(5, 3), n_bits=16, likelihood="gaussian")
    assert AutoencoderConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="autoencoder config: unknown setting"):
        AutoencoderConfig.from_dict({**cfg.to_dict(), "width": 3})


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "multinomial"])
def test_forward_shapes_and_finite_loss(likelihood: str) -> None:
    model = _model(likelihood, balance_weight=1.0, decorrelation_weight=1.0, neighbour_weight=1.0)
    x = torch.rand(6, 20)
    out = model(x, x, noise=torch.randn(6, 8), neighbour=x.flip(0))
    assert out.recon.shape == (6, 20)
    assert out.code_logits.shape == out.code_probs.shape == (6, 8)
    assert out.loss is not None and out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    if likelihood == "multinomial":
        torch.testing.assert_close(out.recon.sum(1), torch.ones(6))
    if likelihood == "bernoulli":
        assert ((out.recon >= 0) & (out.recon <= 1)).all()
    assert model(x).loss is None


def test_code_noise_only_in_training_mode() -> None:
    model = _model(code_noise=4.0)
    x = torch.rand(5, 20)
    noise = torch.randn(5, 8)
    model.train()
    noisy = model(x, noise=noise).code_probs
    model.eval()
    clean = model(x, noise=noise).code_probs
    torch.testing.assert_close(clean, torch.sigmoid(model(x).code_logits))
    assert not torch.allclose(noisy, clean)


def test_straight_through_codes_are_binary_and_pass_gradients() -> None:
    model = _model(straight_through=True, code_noise=0.0).train()
    x = torch.rand(5, 20)
    out = model(x, x)
    torch.testing.assert_close(out.code_probs, out.code_probs.round(), atol=1e-6, rtol=0)
    assert out.loss is not None
    out.loss.backward()
    assert model.encoder[0].weight.grad is not None
    assert model.encoder[0].weight.grad.abs().sum() > 0


def test_init_from_data_gives_unit_scale_pre_activations() -> None:
    model = _model()
    x = torch.rand(200, 20) * 0.01  # tiny inputs, like L2-normalised tf-idf
    model.init_from_data(x)
    pre = model.encoder[0](x)
    torch.testing.assert_close(pre.std(0), torch.ones(12), atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(pre.mean(0), torch.zeros(12), atol=1e-4, rtol=0)
    assert np.isfinite(model.encode_layers(x)[1].detach().numpy()).all()
