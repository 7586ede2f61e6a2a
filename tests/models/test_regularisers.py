import functools

import pytest
import torch

from models.regularisers import (
    bit_balance,
    bit_decorrelation,
    contractive_penalty,
    corrupt,
    sigmoid_jacobian_norm,
    sparse_penalty,
)
from models.shallow import LayerRegularisation, ShallowAutoencoder


def _patterns(n: int = 512, dim: int = 32, seed: int = 0) -> torch.Tensor:
    """Binary data from 4 prototypes with 10% flipped pixels: structure an AE can learn."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(4, dim, generator=g) < 0.5).float()
    x = protos[torch.randint(0, 4, (n,), generator=g)]
    flip = torch.rand(n, dim, generator=g) < 0.1
    return torch.where(flip, 1 - x, x)


@functools.cache
def _fit(reg: LayerRegularisation, seed: int = 0, epochs: int = 25) -> ShallowAutoencoder:
    """A shallow AE fitted on _patterns(seed=seed); cached so the plain baseline is trained once."""
    x = _patterns(seed=seed)
    torch.manual_seed(0)
    ae = ShallowAutoencoder(x.shape[1], 16, "bernoulli", reg)
    opt = torch.optim.Adam(ae.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        for xb in x.split(32):
            loss = ae(xb, xb, generator=gen).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    return ae.eval()


def test_contractive_penalty_equals_autograd_jacobian() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 3)
    x = torch.randn(4, 5)
    exact = sigmoid_jacobian_norm(x, layer)
    by_autograd = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda v: torch.sigmoid(layer(v)), xi).pow(2).sum()
            for xi in x
        ]
    ).mean()
    torch.testing.assert_close(exact, by_autograd)
    h = torch.sigmoid(layer(x))
    torch.testing.assert_close(contractive_penalty(h, layer.weight), exact)


def test_scaled_contractive_penalty_is_the_jacobian_in_units_of_each_features_spread() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 3)
    scale = torch.tensor([0.01, 0.1, 1.0, 2.0, 0.0])
    x = torch.randn(4, 5) * scale
    by_autograd = torch.stack(
        [
            (torch.autograd.functional.jacobian(lambda v: torch.sigmoid(layer(v)), xi) * scale)
            .pow(2)
            .sum()
            for xi in x
        ]
    ).mean()
    h = torch.sigmoid(layer(x))
    torch.testing.assert_close(contractive_penalty(h, layer.weight, scale), by_autograd)
    # rescaling a feature and its weights the other way leaves the penalty as it was
    stretch = torch.tensor([100.0, 1.0, 1.0, 1.0, 1.0])
    torch.testing.assert_close(
        contractive_penalty(h, layer.weight / stretch, scale * stretch), by_autograd
    )


def test_contractive_penalty_lowers_encoder_jacobian_norm() -> None:
    x = _patterns()
    plain = _fit(LayerRegularisation())
    contractive = _fit(LayerRegularisation(contractive_weight=1.0))
    assert sigmoid_jacobian_norm(x, contractive.encoder) < 0.5 * sigmoid_jacobian_norm(
        x, plain.encoder
    )


@pytest.mark.parametrize("kind", ["l1", "kl"])
def test_sparse_penalty_lowers_mean_activation(kind: str) -> None:
    x = _patterns()
    plain = _fit(LayerRegularisation())
    sparse = _fit(LayerRegularisation(sparse_weight=0.5 if kind == "kl" else 0.2, sparse_kind=kind))
    with torch.no_grad():
        assert sparse.features(x).mean() < 0.7 * plain.features(x).mean()


@pytest.mark.parametrize(
    ("kind", "level"), [("masking", 0.4), ("salt_pepper", 0.3), ("gaussian", 0.5)]
)
def test_denoising_improves_reconstruction_of_corrupted_inputs(kind: str, level: float) -> None:
    test = _patterns(256, seed=0)
    noisy = corrupt(test, kind, level, torch.Generator().manual_seed(5)).clamp(0, 1)
    plain = _fit(LayerRegularisation())
    denoising = _fit(LayerRegularisation(corruption=kind, corruption_level=level))
    with torch.no_grad():
        err_plain = (plain(noisy).recon - test).pow(2).sum(1).mean()
        err_denoising = (denoising(noisy).recon - test).pow(2).sum(1).mean()
    assert err_denoising < err_plain


def test_corruptions_do_what_they_say() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 50) * 0.8 + 0.1
    masked = corrupt(x, "masking", 0.3, g)
    assert abs((masked == 0).float().mean().item() - 0.3) < 0.03
    sp = corrupt(x, "salt_pepper", 0.2, g)
    changed = sp != x
    assert abs(changed.float().mean().item() - 0.2) < 0.03
    assert torch.isin(sp[changed], torch.stack([x.min(), x.max()])).all()
    gauss = corrupt(x, "gaussian", 0.5, g)
    assert abs((gauss - x).std().item() - 0.5) < 0.03
    assert corrupt(x, "none", 0.5) is x
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(x, "blur", 0.1)


def test_sparse_penalty_values() -> None:
    h = torch.full((4, 3), 0.05)
    assert sparse_penalty(h, "kl", 0.05).item() == pytest.approx(0.0, abs=1e-6)
    assert sparse_penalty(torch.full((4, 3), 0.5), "kl", 0.05) > 0
    assert sparse_penalty(h, "l1").item() == pytest.approx(0.15)


def test_bit_balance_and_decorrelation() -> None:
    g = torch.Generator().manual_seed(0)
    balanced = (torch.rand(4000, 8, generator=g) < 0.5).float()
    assert bit_balance(balanced) < 0.01
    assert bit_balance(torch.ones(10, 8)) == pytest.approx(8.0)
    assert bit_decorrelation(balanced) < 0.01
    copies = balanced[:, :1].repeat(1, 8)
    assert bit_decorrelation(copies) > 0.9


def test_layer_regularisation_validation() -> None:
    with pytest.raises(ValueError, match="corruption must be one of"):
        LayerRegularisation(corruption="blur")
    with pytest.raises(ValueError, match="use a value < 1"):
        LayerRegularisation(corruption="masking", corruption_level=1.5)


def test_a_level_per_item_corrupts_each_row_at_its_own_rate() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4000) * 0.8 + 0.1
    level = torch.tensor([[0.0], [0.2], [0.6]])
    masked = corrupt(x, "masking", level, g)
    torch.testing.assert_close(masked[0], x[0])
    rates = (masked == 0).float().mean(1)
    assert abs(rates[1].item() - 0.2) < 0.03 and abs(rates[2].item() - 0.6) < 0.03
    gauss = corrupt(x, "gaussian", level, g)
    stds = (gauss - x).std(1)
    assert stds[0].item() == 0 and abs(stds[2].item() / stds[1].item() - 3) < 0.2
