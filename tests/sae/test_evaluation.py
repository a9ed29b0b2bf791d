import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hiddenlens.sae import SAEConfig, build_sae, evaluate, feature_density
from hiddenlens.sae.evaluation import reconstruction_metrics
from tests.sae.fakes import FakeStore


def _sae_and_store(mean=5.0):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(500, 6)) + mean).astype(np.float32)
    sae = build_sae(SAEConfig(d_in=6, d_sae=10, architecture="topk", k=2), seed=0).eval()
    with torch.no_grad():
        sae.b_dec.fill_(mean)
    return sae, FakeStore({"h": x}), x


def test_fvu_matches_hand_computation_with_nonzero_mean():
    sae, store, x = _sae_and_store()
    m = evaluate(sae, store, "h", batch_size=64)
    with torch.no_grad():
        xh = sae.reconstruct(torch.from_numpy(x)).numpy().astype(np.float64)
    x64 = x.astype(np.float64)
    err = ((x64 - xh) ** 2).sum()
    fvu = err / ((x64 - x64.mean(0)) ** 2).sum()
    assert m["sae/fvu/h"] == pytest.approx(fvu, rel=1e-6)
    assert m["sae/explained_variance/h"] == pytest.approx(1 - fvu, rel=1e-6)
    assert m["sae/mse/h"] == pytest.approx(err / len(x), rel=1e-6)
    # the old (uncentred) SAEBench denominator would have given a very different answer
    wrong = err / ((x64**2).sum(1).mean() - ((x64**2).mean(0).mean()) ** 2) / len(x)
    assert abs(wrong - fvu) > 0.1 * fvu
    cos = (x64 * xh).sum(1) / np.linalg.norm(x64, axis=1) / np.linalg.norm(xh, axis=1)
    assert m["sae/cosine/h"] == pytest.approx(cos.mean(), rel=1e-6)
    ratio = np.linalg.norm(xh, axis=1) / np.linalg.norm(x64, axis=1)
    assert m["sae/l2_ratio/h"] == pytest.approx(ratio.mean(), rel=1e-6)
    bias = (xh**2).sum(1).mean() / (x64 * xh).sum(1).mean()
    assert m["sae/relative_reconstruction_bias/h"] == pytest.approx(bias, rel=1e-6)
    with torch.no_grad():
        z = sae.encode(torch.from_numpy(x)).numpy()
    assert m["sae/l0/h"] == pytest.approx((z != 0).sum(1).mean())
    assert m["sae/l1/h"] == pytest.approx(np.abs(z).sum(1).mean(), rel=1e-5)


def test_sparsity_metrics_and_density_histogram():
    sae, store, x = _sae_and_store()
    m = evaluate(sae, store, "h", max_rows=300)
    assert m["sae/n_rows/h"] == 300
    dens = feature_density(sae, store, "h", max_rows=300)
    assert dens.shape == (10,) and dens.sum() == pytest.approx(m["sae/l0/h"])
    hist = sum(v for k, v in m.items() if k.startswith("sae/density_hist"))
    assert hist == 10  # every latent is counted once (dead or in a bin)
    assert m["sae/dead_fraction/h"] == pytest.approx((dens == 0).mean())
    assert all(isinstance(v, float) for v in m.values())


def test_reconstruction_metrics_perfect():
    x = torch.randn(20, 4) + 3
    r = reconstruction_metrics(x, x.clone())
    assert r["fvu"] == 0 and r["cosine"] == pytest.approx(1.0)


def test_store_d_mismatch_raises():
    sae, store, _ = _sae_and_store()
    small = build_sae(SAEConfig(d_in=5, d_sae=10, architecture="relu"))
    with pytest.raises(ValueError, match="d_in=5"):
        evaluate(small, store, "h")


def test_spliced_metrics_on_tiny_model_with_pluggable_downstream():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    inputs = torch.randn(32, 4)
    acts = torch.relu(model[0](inputs)).detach().numpy()
    store = FakeStore({"1": acts})
    # an exact SAE on nonnegative activations: identity encoder/decoder, ReLU
    sae = build_sae(SAEConfig(d_in=6, d_sae=6, architecture="relu", apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(6))
        sae.W_dec.copy_(torch.eye(6))
    target = torch.randn(32, 3)

    def loss(out, batch):
        return float(((out - target[: len(out)]) ** 2).mean())

    m = evaluate(sae, store, "1", model=model, data=inputs, downstream=loss)
    assert m["sae/downstream_score/1"] == pytest.approx(1.0)
    assert m["sae/downstream_spliced/1"] == pytest.approx(m["sae/downstream_clean/1"])
    with pytest.raises(ValueError, match="need data"):
        evaluate(sae, store, "1", model=model)


class _TinyLM(nn.Module):
    def __init__(self, vocab=11, d=6):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.mid = nn.Sequential(nn.Linear(d, d), nn.ReLU())
        self.out = nn.Linear(d, vocab)

    def forward(self, input_ids, attention_mask=None):
        return self.out(self.mid(self.emb(input_ids)))


def test_spliced_ce_and_kl_for_a_language_model():
    torch.manual_seed(1)
    model = _TinyLM().eval()
    ids = torch.randint(0, 11, (4, 7))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    with torch.no_grad():
        acts = model.mid(model.emb(ids)).reshape(-1, 6).numpy()
    store = FakeStore({"mid": acts})
    sae = build_sae(SAEConfig(d_in=6, d_sae=6, architecture="relu", apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(6))
        sae.W_dec.copy_(torch.eye(6))
    m = evaluate(sae, store, "mid", model=model, data={"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        logits = model(ids)
        keep = (mask[:, 1:] * mask[:, :-1]).bool()
        ce = F.cross_entropy(logits[:, :-1][keep], ids[:, 1:][keep])
        zero_logits = model.out(torch.zeros(4, 7, 6))
        ce_zero = F.cross_entropy(zero_logits[:, :-1][keep], ids[:, 1:][keep])
    assert m["sae/ce_clean/mid"] == pytest.approx(float(ce), rel=1e-5)
    assert m["sae/ce_zero/mid"] == pytest.approx(float(ce_zero), rel=1e-5)
    assert m["sae/ce_loss_score/mid"] == pytest.approx(1.0)
    assert m["sae/kl_spliced/mid"] == pytest.approx(0.0, abs=1e-9)
    assert m["sae/kl_score/mid"] == pytest.approx(1.0)


def test_spliced_metrics_read_data_through_as_data():
    """A mapping, a DataSource and any batch size give the same CE / KL (sums over tokens)."""
    from hiddenlens.data import as_data
    from hiddenlens.sae.spliced import spliced_metrics

    torch.manual_seed(2)
    model = _TinyLM().eval()
    ids = torch.randint(0, 11, (5, 6))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    sae = build_sae(SAEConfig(d_in=6, d_sae=12, architecture="relu"))
    data = {"input_ids": ids, "attention_mask": mask}
    one = spliced_metrics(sae, model, "mid", data, batch_size=16)
    assert set(one) >= {"ce_clean", "ce_spliced", "kl_spliced"}
    for other in (
        spliced_metrics(sae, model, "mid", data, batch_size=2),
        spliced_metrics(sae, model, "mid", as_data(data), batch_size=1),
    ):
        assert other == pytest.approx(one, rel=1e-6)
    with pytest.raises(TypeError, match="has no tokenizer"):
        spliced_metrics(sae, model, "mid", ["a text"])
