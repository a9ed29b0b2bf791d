import pytest
import torch

from hiddenlens.sae import SAEConfig, architecture_names, build_sae
from hiddenlens.sae.architectures.gradient_topk import gradient_scores
from tests.sae.fakes import small_config


def _cfg(arch, **kw):
    return small_config(arch, d_sae=32, **kw)


@pytest.mark.parametrize("arch", architecture_names())
def test_shapes_and_losses(arch):
    sae = build_sae(_cfg(arch), seed=0)
    x = torch.randn(16, 8)
    z = sae.encode(x)
    assert z.shape == (16, 32)
    assert sae.decode(z).shape == (16, 8)
    pair = {"target": torch.randn(16, 8)} if type(sae).pair_role == "target" else {}
    out = sae(x, coefs={"l1": 1.0, "aux": 1 / 32}, dead_mask=torch.ones(32, dtype=torch.bool),
              **pair)  # fmt: skip
    assert out.recon.shape == (16, 8) and out.latents.shape == (16, 32)
    assert "mse" in out.losses and torch.isfinite(out.losses["loss"])
    out.losses["loss"].backward()
    assert sae.W_dec.grad is not None and torch.isfinite(sae.W_dec.grad).all()
    # the reconstruction of a leading-shape input keeps its shape
    assert sae.reconstruct(torch.randn(2, 3, 8)).shape == (2, 3, 8)


def test_topk_l0_is_exactly_k():
    sae = build_sae(SAEConfig(d_in=16, d_sae=64, architecture="topk", k=5), seed=1)
    z = sae.encode(torch.randn(200, 16))
    assert ((z != 0).sum(1) == 5).all()


def test_encoder_initialised_as_decoder_transpose_and_unit_norm():
    sae = build_sae(SAEConfig(d_in=8, d_sae=16, architecture="relu"), seed=0)
    assert torch.equal(sae.W_enc, sae.W_dec.t())
    assert torch.allclose(sae.W_dec.norm(dim=1), torch.ones(16), atol=1e-6)


def test_bad_configs():
    with pytest.raises(ValueError, match="k=40"):
        SAEConfig(d_in=8, d_sae=32, architecture="topk", k=40)
    with pytest.raises(ValueError, match="needs k"):
        SAEConfig(d_in=8, d_sae=32, architecture="topk")
    with pytest.raises(ValueError, match="architecture"):
        SAEConfig(d_in=8, d_sae=32, architecture="nope")
    sae = build_sae(SAEConfig(d_in=8, d_sae=32, architecture="relu"))
    with pytest.raises(ValueError, match="d_in=8"):
        sae.encode(torch.randn(3, 7))
    with pytest.raises(TypeError):
        sae.encode([[1.0] * 8])


def _identity_sae(arch, k=1):
    sae = build_sae(SAEConfig(d_in=8, d_sae=8, architecture=arch, k=k, grad_beta=1.0))
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(8))
        sae.W_dec.copy_(torch.eye(8))
    return sae


def test_gradient_topk_keeps_small_but_influential_latent():
    # Latent 0 has the larger activation (1.0) but no effect on the loss; latent 1 is
    # small (0.2) but the downstream gradient points along it.
    x = torch.tensor([[1.0, 0.2, 0, 0, 0, 0, 0, 0]])
    g = torch.tensor([[0.0, 3.0, 0, 0, 0, 0, 0, 0]])
    plain = _identity_sae("topk").encode(x)
    gsae = _identity_sae("gradient_topk")
    guided = gsae.encode_with_grad(x, g)
    assert plain[0].nonzero().flatten().tolist() == [0]
    assert guided[0].nonzero().flatten().tolist() == [1]
    assert guided[0, 1].item() == pytest.approx(0.2)  # the kept value is the plain activation
    # first-order downstream loss change g.(x_hat - x) is smaller with the g-SAE choice
    err_plain = (g * (gsae.decode(plain) - x)).sum().abs()
    err_guided = (g * (gsae.decode(guided) - x)).sum().abs()
    assert err_guided < err_plain
    # the training path selects the same latent
    out = gsae(x, grad=g)
    assert out.latents[0].nonzero().flatten().tolist() == [1]
    # without a gradient it is plain TopK
    assert torch.equal(gsae.encode(x), plain)


def test_gradient_scores_literal_form():
    z = torch.tensor([[1.0, 2.0]])
    w = torch.eye(2)
    g = torch.tensor([[3.0, 0.0]])
    s = gradient_scores(z, w, g, beta=0.5, normalize=False)
    assert torch.allclose(s, torch.tensor([[1.0 + 0.5 * 3.0, 2.0]]))


def test_batchtopk_average_l0_and_threshold_export():
    sae = build_sae(SAEConfig(d_in=8, d_sae=32, architecture="batchtopk", k=3), seed=0).train()
    out = sae(torch.randn(64, 8))
    assert out.l0.item() == pytest.approx(3.0)
    assert float(sae.threshold) > 0
    exported = sae.sparsity_params()["threshold"]
    assert exported.shape == (32,) and torch.allclose(exported, exported[0].expand(32))
