"""Equivalence with the real sae-lens package in both directions."""

import pytest
import torch

from hiddenlens.sae import SAEConfig, build_sae, load

sae_lens = pytest.importorskip("sae_lens")


def _perturb(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name == "threshold":
                p.copy_(torch.rand(p.shape, generator=g) * 0.2)
            else:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


def _saelens_models():
    d_in, d_sae = 8, 32
    yield "topk", sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=5))
    yield "relu", sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    yield "jumprelu", sae_lens.JumpReLUSAE(sae_lens.JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae))
    yield "gated", sae_lens.GatedSAE(sae_lens.GatedSAEConfig(d_in=d_in, d_sae=d_sae))


@pytest.mark.parametrize("i", range(4))
def test_saelens_to_hiddenlens(i, tmp_path):
    arch, ref = list(_saelens_models())[i]
    _perturb(ref, seed=i)
    ref.save_model(tmp_path)
    ours = load(tmp_path)
    assert ours.cfg.architecture == arch
    x = torch.randn(64, 8)
    with torch.no_grad():
        z_ref = ref.encode(x)
        assert torch.allclose(ours.encode(x), z_ref, atol=1e-6)
        assert torch.allclose(ours.decode(z_ref), ref.decode(z_ref), atol=1e-6)


def test_saelens_trained_topk_with_decoder_norm_rescaling(tmp_path):
    cfg = sae_lens.TopKTrainingSAEConfig(d_in=8, d_sae=32, k=4, rescale_acts_by_decoder_norm=True)
    ref = sae_lens.TopKTrainingSAE(cfg)
    _perturb(ref, seed=7)
    ref.save_inference_model(tmp_path)
    ours = load(tmp_path)
    x = torch.randn(64, 8)
    with torch.no_grad():
        assert torch.allclose(ours.reconstruct(x), ref(x), atol=1e-5)


@pytest.mark.parametrize("arch", ["topk", "relu", "jumprelu", "gated", "batchtopk"])
def test_hiddenlens_to_saelens(arch, tmp_path):
    k = 5 if arch in ("topk", "batchtopk") else None
    ours = build_sae(SAEConfig(d_in=8, d_sae=32, architecture=arch, k=k), seed=1)
    _perturb(ours, seed=3)
    if arch == "batchtopk":
        ours.threshold.fill_(0.1)
    ours.eval().save(tmp_path)
    ref = sae_lens.SAE.load_from_disk(tmp_path)
    x = torch.randn(64, 8)
    with torch.no_grad():
        z = ours.encode(x)
        assert torch.allclose(ref.encode(x), z, atol=1e-6)
        assert torch.allclose(ref.decode(z), ours.decode(z), atol=1e-6)
