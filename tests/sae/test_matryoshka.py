"""Matryoshka BatchTopK: equal to SAELens's training loss, nested prefixes, SAELens-loadable."""

import numpy as np
import pytest
import torch

from hiddenlens.sae import SAEConfig, TrainConfig, build_sae, load, train
from tests.sae.fakes import FakeStore, planted_data

WIDTHS = [8, 24, 64]


def _cfg(**kw):
    base = dict(d_in=16, d_sae=64, architecture="matryoshka_batchtopk", k=4,
                matryoshka_widths=WIDTHS)  # fmt: skip
    return SAEConfig(**{**base, **kw})


def test_bad_widths():
    with pytest.raises(ValueError, match="needs matryoshka_widths"):
        _cfg(matryoshka_widths=None)
    with pytest.raises(ValueError, match="must end at d_sae=64"):
        _cfg(matryoshka_widths=[8, 32])
    with pytest.raises(ValueError, match="increase strictly"):
        _cfg(matryoshka_widths=[24, 8, 64])
    with pytest.raises(ValueError, match="positive int"):
        _cfg(matryoshka_widths=[0, 64])


def test_training_loss_equals_saelens():
    pytest.importorskip("sae_lens")
    from sae_lens.saes.matryoshka_batchtopk_sae import (
        MatryoshkaBatchTopKTrainingSAE,
        MatryoshkaBatchTopKTrainingSAEConfig,
    )
    from sae_lens.saes.sae import TrainStepInput

    ours = build_sae(_cfg(), seed=0).train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        ours.b_dec.copy_(0.1 * torch.randn(16, generator=g))
        ours.b_enc.copy_(0.1 * torch.randn(64, generator=g))
    ref = MatryoshkaBatchTopKTrainingSAE(
        MatryoshkaBatchTopKTrainingSAEConfig(d_in=16, d_sae=64, k=4, matryoshka_widths=WIDTHS)
    )
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(ref, name).copy_(getattr(ours, name))
    x = torch.randn(32, 16, generator=g)
    out = ours(x, coefs={"aux": 0.0})
    want = ref.training_forward_pass(
        TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None, n_training_steps=0,
                       is_logging_step=False)
    )  # fmt: skip
    got = {k: v.item() for k, v in out.losses.items()}
    theirs = {k: v.item() for k, v in want.losses.items()}
    assert got["mse"] == pytest.approx(theirs["mse_loss"], rel=1e-5)
    for w in WIDTHS[:-1]:
        assert got[f"inner_mse_{w}"] == pytest.approx(theirs[f"inner_mse_loss_{w}"], rel=1e-5)
    assert got["loss"] == pytest.approx(want.loss.item(), rel=1e-5)
    out.losses["loss"].backward()
    want.loss.backward()
    for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
        assert torch.allclose(getattr(ours, name).grad, getattr(ref, name).grad, atol=1e-5), name


def test_prefix_fvu_falls_with_size_and_saelens_loads_it(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    x, _ = planted_data(n=8192, d=16, m=48, k_true=3, seed=4)
    tc = TrainConfig(total_tokens=256 * 120, batch_size=256, lr=4e-3, checkpoint_every=0,
                     dead_tokens=2048)  # fmt: skip
    sae = train(FakeStore({"h": x}), "h", _cfg(), tc, out_dir=tmp_path)
    xt = torch.from_numpy(x[:2048])

    def fvu(r):
        return float(((xt - r) ** 2).sum() / ((xt - xt.mean(0)) ** 2).sum())

    with torch.no_grad():
        f = [fvu(sae.prefix_reconstruction(xt, w)) for w in WIDTHS]
    assert f[0] > f[1] > f[2] and f[2] < 0.3 and np.isfinite(f).all()
    ref = sae_lens.SAE.load_from_disk(tmp_path)
    back = load(tmp_path)
    assert back.cfg.architecture == "jumprelu"
    with torch.no_grad():
        z = back.encode(xt)
        assert torch.allclose(ref.encode(xt), z, atol=1e-5)
        assert torch.allclose(ref.decode(z), back.decode(z), atol=1e-5)
        assert torch.allclose(z, sae.encode(xt), atol=1e-5)
