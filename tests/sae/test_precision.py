"""bf16 latent choice with fp32 master weights (TrainConfig.encoder_dtype)."""

import pytest
import torch

from hiddenlens.sae import SAEConfig, TrainConfig, train
from hiddenlens.sae.architectures.topk import select_topk
from hiddenlens.sae.base import build_sae
from tests.sae.fakes import FakeStore, planted_data


def _fvu(sae, x):
    with torch.no_grad():
        recon = sae.decode(sae.encode(x))
    return float(((recon - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def test_bf16_selection_trains_as_well_as_fp32_on_a_planted_task():
    x, _ = planted_data(n=12000, d=32, m=64, k_true=3, mean_shift=0.5, seed=1)
    store, held = FakeStore({"h": x[:10000]}), torch.from_numpy(x[10000:].copy())
    cfg = SAEConfig(d_in=32, d_sae=128, architecture="topk", k=3)
    fvu = {}
    for dtype in ("float32", "bfloat16"):
        tcfg = TrainConfig(total_tokens=256 * 200, batch_size=256, lr=4e-3, dead_tokens=5000,
                           encoder_dtype=dtype)  # fmt: skip
        sae = train(store, "h", cfg, tcfg)
        assert all(p.dtype == torch.float32 for p in sae.parameters())  # fp32 master weights
        fvu[dtype] = _fvu(sae, held)
    assert fvu["float32"] < 0.2
    assert abs(fvu["bfloat16"] - fvu["float32"]) < 0.03, fvu


def test_bf16_choice_keeps_fp32_values_of_the_chosen_latents():
    sae = build_sae(SAEConfig(d_in=16, d_sae=64, architecture="topk", k=4), seed=0)
    x = torch.randn(50, 16)
    sae.selection_dtype = torch.bfloat16
    sel = select_topk(sae, x, 4)
    exact = (x @ sae.W_enc + sae.b_enc).gather(1, sel.idx)
    torch.testing.assert_close(sel.pre, exact, rtol=1e-5, atol=1e-5)  # fp32, not bf16-rounded
    assert sel.pre.dtype == torch.float32


def test_encoder_dtype_is_validated():
    with pytest.raises(ValueError, match="encoder_dtype must be one of"):
        TrainConfig(encoder_dtype="float16")
    x, _ = planted_data(n=600, d=8, m=16, k_true=2, seed=0)
    with pytest.raises(ValueError, match="needs a TopK"):
        train(FakeStore({"h": x}), "h", SAEConfig(d_in=8, d_sae=16, architecture="relu"),
              TrainConfig(total_tokens=512, batch_size=256, encoder_dtype="bfloat16"))  # fmt: skip


def test_mse_of_a_float16_sae_does_not_overflow_on_a_large_batch():
    # per row ~64 squared error, 4096 rows: the batch total (~2.6e5) exceeds float16's max
    # (65504) although the loss, a mean over rows, is ~64
    sae = build_sae(SAEConfig(d_in=64, d_sae=128, architecture="relu"), seed=0)
    x = torch.ones(4096, 64) + 0.01 * torch.randn(4096, 64, generator=torch.Generator().manual_seed(0))
    ref = sae(x).losses["mse"]
    got = sae.half()(x.half()).losses["mse"]
    assert torch.isfinite(got)
    torch.testing.assert_close(got.float(), ref, rtol=2e-2, atol=0)
