"""Transcoders: planted maps recovered, SAELens both ways, sparsify's format, splicing."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hiddenlens.sae import SAEConfig, TrainConfig, build_sae, evaluate, load, train
from tests.sae.fakes import FakeStore

D_IN, D_OUT, M = 24, 20, 16


def _planted(n=6000, seed=0, skip=False):
    """x: sparse codes through a full-rank map (codes are linear in x); y: the same codes
    through another map (+ a direct linear term of x for the skip case), plus a bias."""
    rng = np.random.default_rng(seed)
    f_in, f_out = rng.normal(size=(M, D_IN)), rng.normal(size=(M, D_OUT))
    f_out /= np.linalg.norm(f_out, axis=1, keepdims=True)
    codes = np.zeros((n, M))
    for i in range(n):
        j = rng.choice(M, size=2, replace=False)
        codes[i, j] = rng.uniform(0.5, 1.5, size=2)
    x = codes @ f_in + 0.01 * rng.normal(size=(n, D_IN))
    y = codes @ f_out + 0.3
    if skip:
        y = y + x @ (0.05 * rng.normal(size=(D_IN, D_OUT)))
    return x.astype(np.float32), y.astype(np.float32)


def _cfg(arch, **kw):
    k = 2 if arch.startswith("topk") else None
    return SAEConfig(d_in=D_IN, d_sae=48, architecture=arch, k=k, apply_b_dec_to_input=False,
                     output_hook="out", **kw)  # fmt: skip


def _fvu(sae, x, y):
    with torch.no_grad():
        r = sae.transcode(torch.from_numpy(x)).numpy()
    return float(((y - r) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


@pytest.mark.parametrize("arch", ["topk_transcoder", "transcoder"])
def test_recovers_a_planted_sparse_map_from_input_to_output_rows(arch, tmp_path):
    x, y = _planted()
    store = FakeStore({"in": x, "out": y})
    l1 = {"l1_coefficient": 0.3} if arch == "transcoder" else {}
    tc = TrainConfig(total_tokens=256 * 250, batch_size=256, lr=5e-3, checkpoint_every=0,
                     dead_tokens=2048, **l1)  # fmt: skip
    sae = train(store, "in", _cfg(arch), tc, out_dir=tmp_path)
    assert sae.cfg.d_out == D_OUT and sae.W_dec.shape == (48, D_OUT)
    assert _fvu(sae, x, y) < 0.1
    m = evaluate(sae, store, "in")  # reconstruction metrics are about the output rows
    assert m["sae/fvu/in"] == pytest.approx(_fvu(sae, x, y), rel=1e-3)
    back = load(tmp_path)
    xt = torch.from_numpy(x[:100])
    assert back.cfg.architecture == arch and torch.allclose(back.transcode(xt), sae.transcode(xt))


def test_skip_connection_captures_the_linear_part():
    x, y = _planted(skip=True, seed=1)
    store = FakeStore({"in": x, "out": y})
    tc = TrainConfig(total_tokens=256 * 250, batch_size=256, lr=5e-3, checkpoint_every=0,
                     dead_tokens=2048)  # fmt: skip
    plain = train(store, "in", _cfg("topk_transcoder"), tc)
    skip = train(store, "in", _cfg("topk_skip_transcoder"), tc)
    assert _fvu(skip, x, y) < 0.5 * _fvu(plain, x, y)


def test_transcoder_needs_its_output_hook_and_no_input_centring():
    with pytest.raises(ValueError, match="apply_b_dec_to_input=False"):
        SAEConfig(d_in=4, d_sae=8, architecture="transcoder")
    cfg = SAEConfig(d_in=4, d_sae=8, architecture="transcoder", apply_b_dec_to_input=False)
    with pytest.raises(ValueError, match="needs output_hook"):
        train(FakeStore({"in": np.zeros((64, 4))}), "in", cfg, TrainConfig(total_tokens=64,
              batch_size=32))  # fmt: skip


@pytest.mark.parametrize("arch", ["transcoder", "skip_transcoder"])
def test_saelens_both_ways(arch, tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    ours = build_sae(_cfg(arch, d_out=D_OUT), seed=0).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    ours.save(tmp_path / "ours")
    ref = sae_lens.SAE.load_from_disk(tmp_path / "ours")
    assert type(ref).__name__ == {"transcoder": "Transcoder", "skip_transcoder": "SkipTranscoder"}[arch]
    x = torch.randn(32, D_IN, generator=g)
    with torch.no_grad():
        assert torch.allclose(ref.encode(x), ours.encode(x), atol=1e-6)
        assert torch.allclose(ref(x), ours.transcode(x), atol=1e-5)
        ref.save_model(tmp_path / "theirs")
        back = load(tmp_path / "theirs")
        assert back.cfg.architecture == arch and back.cfg.d_out == D_OUT
        assert torch.allclose(back.transcode(x), ref(x), atol=1e-5)


def test_loads_a_sparsify_skip_transcoder(tmp_path):
    from safetensors.torch import save_file

    n, k = 30, 3
    g = torch.Generator().manual_seed(0)
    t = {
        "encoder.weight": torch.randn(n, D_IN, generator=g),
        "encoder.bias": 0.1 * torch.randn(n, generator=g),
        "W_dec": torch.randn(n, D_OUT, generator=g),
        "b_dec": torch.randn(D_OUT, generator=g),
        "W_skip": 0.1 * torch.randn(D_OUT, D_IN, generator=g),
    }
    save_file(t, str(tmp_path / "sae.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps(
        {"d_in": D_IN, "k": k, "num_latents": n, "transcode": True, "skip_connection": True}
    ))  # fmt: skip
    sae = load(tmp_path)
    assert sae.cfg.architecture == "topk_skip_transcoder"
    x = torch.randn(10, D_IN, generator=g)
    # sparsify with transcode: no input centring; top-k of ReLU(encoder(x)); + x W_skip^T
    pre = torch.relu(x @ t["encoder.weight"].t() + t["encoder.bias"])
    v, i = pre.topk(k, dim=1)
    ref = (v[..., None] * t["W_dec"][i]).sum(1) + t["b_dec"] + x @ t["W_skip"].t()
    with torch.no_grad():
        assert torch.allclose(sae.transcode(x), ref, atol=1e-5)


def test_splicing_a_transcoder_in_place_of_an_mlp(tiny_tl):
    from hiddenlens.sae.spliced import SpliceConventions, spliced_metrics

    hin, hout = "blocks.0.ln2.hook_normalized", "blocks.0.hook_mlp_out"
    cfg = SAEConfig(d_in=16, d_sae=32, architecture="skip_transcoder", d_out=16,
                    apply_b_dec_to_input=False, output_hook=hout)  # fmt: skip
    tc = build_sae(cfg, seed=0).eval()
    with torch.no_grad():
        tc.W_skip.copy_(0.1 * torch.randn(16, 16))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (3, 10), generator=g)
    got = spliced_metrics(tc, tiny_tl, hin, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                          conventions=SpliceConventions(exclude_special_tokens=False))  # fmt: skip
    seen = {}

    def record(a, hook):
        seen["x"] = a

    def replace(a, hook):
        return tc.reconstruct(seen["x"])

    with torch.no_grad():
        clean = tiny_tl(ids)
        spliced = tiny_tl.run_with_hooks(ids, fwd_hooks=[(hin, record), (hout, replace)])
        zero = tiny_tl.run_with_hooks(ids, fwd_hooks=[(hout, lambda a, hook: torch.zeros_like(a))])

    def ce(logits):
        return float(F.cross_entropy(logits[:, :-1].reshape(-1, 20), ids[:, 1:].reshape(-1)))

    def kl(logits):
        lq, lp = F.log_softmax(clean, -1), F.log_softmax(logits, -1)
        return float((lq.exp() * (lq - lp)).sum(-1).mean())

    assert got["ce_spliced"] == pytest.approx(ce(spliced), rel=1e-4)
    assert got["ce_zero"] == pytest.approx(ce(zero), rel=1e-4)
    assert got["kl_spliced"] == pytest.approx(kl(spliced), rel=1e-3, abs=1e-6)
    score = (ce(zero) - ce(spliced)) / (ce(zero) - ce(clean))
    assert got["ce_loss_score"] == pytest.approx(score, rel=1e-3)
