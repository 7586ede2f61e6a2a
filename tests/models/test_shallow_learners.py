import pytest
import torch

from models.psd import PredictiveSparseDecomposition
from models.rbm import RBM


def _data(n: int = 256, dim: int = 24) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    protos = (torch.rand(3, dim, generator=g) < 0.4).float()
    return protos[torch.randint(0, 3, (n,), generator=g)]


def test_rbm_cd1_lowers_reconstruction_error() -> None:
    torch.manual_seed(0)
    x = _data()
    rbm = RBM(24, 12)
    g = torch.Generator().manual_seed(1)
    first = [rbm.cd1_step(xb, lr=0.1, generator=g) for xb in x.split(32)]
    for _ in range(30):
        last = [rbm.cd1_step(xb, lr=0.1, momentum=0.9, generator=g) for xb in x.split(32)]
    assert sum(last) / len(last) < 0.5 * sum(first) / len(first)
    w, b = rbm.encoder_weights()
    assert w.shape == (12, 24) and b.shape == (12,)
    assert rbm.decoder_weights()[0].shape == (24, 12)


def test_rbm_rejects_unknown_visible_units() -> None:
    with pytest.raises(ValueError, match="visible"):
        RBM(4, 2, visible="softmax")
    with pytest.raises(ValueError, match="input_scale"):
        RBM(4, 2, visible="poisson", input_scale=0.0)


def _topic_documents(n: int = 300, vocab: int = 30, length: int = 40) -> torch.Tensor:
    """Word counts (n, vocab): each document draws its words from one of three topics."""
    g = torch.Generator().manual_seed(0)
    topics = torch.softmax(3 * torch.randn(3, vocab, generator=g), dim=1)
    which = torch.randint(0, 3, (n,), generator=g)
    words = torch.multinomial(topics[which], length, replacement=True, generator=g)
    return torch.zeros(n, vocab).scatter_add_(1, words, torch.ones(n, length))


def test_poisson_rbm_learns_topics_and_rebuilds_documents_of_their_own_length() -> None:
    counts = _topic_documents()
    tfidf_like = counts / counts.norm(dim=1, keepdim=True)  # what the network reads
    scale = float(counts.sum(1).mean() / tfidf_like.sum(1).mean())
    rbm = RBM(30, 8, visible="poisson", input_scale=scale)
    rbm.init_visible_bias(tfidf_like)
    # softmax of the initial biases = each word's share of the (pseudo) counts
    shares = (tfidf_like * scale).sum(0) / (tfidf_like * scale).sum()
    torch.testing.assert_close(torch.softmax(rbm.visible_bias, 0), shares, atol=1e-4, rtol=1e-3)
    g = torch.Generator().manual_seed(1)
    first = [rbm.cd1_step(xb, lr=0.01, generator=g) for xb in tfidf_like.split(32)]
    for _ in range(30):
        last = [rbm.cd1_step(xb, lr=0.01, momentum=0.9, generator=g) for xb in tfidf_like.split(32)]
    assert sum(last) / len(last) < sum(first) / len(first) - 0.1  # per-word cross-entropy, nats
    length = (tfidf_like[:5] * scale).sum(1, keepdim=True)
    recon = rbm.visible_mean(rbm.features(tfidf_like[:5]), length)
    torch.testing.assert_close(recon.sum(1, keepdim=True), length)
    # the encoder layer handed to the deep autoencoder reads the unscaled rows
    w, b = rbm.encoder_weights()
    torch.testing.assert_close(torch.sigmoid(tfidf_like @ w.T + b), rbm.features(tfidf_like))


def test_bernoulli_rbm_visible_biases_start_at_the_pixel_log_odds() -> None:
    x = _data()
    rbm = RBM(24, 4)
    rbm.init_visible_bias(x)
    p = x.mean(0).clamp(1e-3, 1 - 1e-3)
    torch.testing.assert_close(torch.sigmoid(rbm.visible_bias), p, atol=1e-5, rtol=1e-4)


def test_psd_alternating_minimisation_lowers_energy_and_codes_are_sparse() -> None:
    torch.manual_seed(0)
    x = _data()
    psd = PredictiveSparseDecomposition(24, 16, sparsity=0.2)
    opt = torch.optim.Adam(psd.parameters(), lr=1e-2)

    def energy() -> float:
        with torch.no_grad():
            pred = psd.features(x)
            return psd.energy(x, psd.infer(x, pred), pred).item()

    before = energy()
    for _ in range(40):
        for xb in x.split(32):
            loss = psd(xb).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            psd.after_step()
    assert energy() < 0.5 * before
    with torch.no_grad():
        pred = psd.features(x)
        h = psd.infer(x, pred)
    assert (h >= 0).all() and (h <= 1).all()
    assert (h == 0).float().mean() > 0.3  # the L1 term zeroes many units
    # inference lowers the energy relative to the predictor's guess
    assert psd.energy(x, h, pred) <= psd.energy(x, pred, pred) + 1e-5
    assert psd.decoder.weight.norm(dim=0).max() <= 1.0 + 1e-5


def test_rbm_sharpen_spreads_units_without_changing_their_thresholds() -> None:
    g = torch.Generator().manual_seed(0)
    rbm = RBM(40, 8)
    v = torch.rand(200, 40, generator=g) * 0.05  # tiny inputs, like L2-normalised tf-idf
    before = v @ rbm.weight.T + rbm.hidden_bias
    assert before.std(0).max() < 0.1  # untrained units: every item looks the same
    rbm.sharpen(v)
    w, b = rbm.encoder_weights()
    after = v @ w.T + b
    torch.testing.assert_close(after.std(0), torch.ones(8), rtol=1e-4, atol=1e-4)
    assert torch.equal(after > 0, before > 0)  # same sign for every item and unit
    torch.testing.assert_close(torch.logit(rbm.features(v)), after, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(rbm.decoder_weights()[0], rbm.weight.T)  # decoder untouched
