"""The g-SAE vs TopK experiment on a causal LM: its pieces against references, and --fast."""

import json

import numpy as np
import pytest
import torch

from experiments.gsae_tinylm import evaluate as ev
from experiments.gsae_tinylm import run
from tests._models import SENTENCES, tiny_gpt2_dir

HOOK = "transformer.h.0"


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    from hiddenlens import load_model

    return load_model(str(tiny_gpt2_dir(tmp_path_factory.mktemp("gpt2"))))


def _sae(arch: str, beta: float = 1.0):
    from hiddenlens.sae import SAEConfig, build_sae

    torch.manual_seed(0)
    return build_sae(SAEConfig(d_in=16, d_sae=32, architecture=arch, k=3, grad_beta=beta))


def test_next_token_loss_is_the_hf_lm_loss(lm):
    batch = lm.tokenize(SENTENCES[:1])
    ref = lm.model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss.detach()
    loss = ev.next_token_loss(lm.forward(batch), batch).detach()
    assert float(loss) == pytest.approx(float(ref), 1e-5)
    with pytest.raises(ValueError, match=">= 2 real tokens"):
        ev.next_token_loss(lm.forward(batch), {"input_ids": batch["input_ids"][:, :1]})


def test_per_document_weights_give_the_pooled_spliced_metrics(lm):
    """Token-weighted per-document means equal spliced_metrics on all documents at once,
    for plain and gradient-selected splices (SAELens's special-token rules included)."""
    from hiddenlens.sae.spliced import spliced_metrics

    sae = _sae("gradient_topk", beta=50.0)
    held = ev.held_out(lm, HOOK, SENTENCES, batch_size=4)
    real = np.concatenate([b["attention_mask"].sum(1).numpy() for b in held.batches])
    assert (held.n_kl == real - 2).all()  # <bos> and <eos> are not counted ...
    assert (held.n_ce == held.n_kl).all()  # ... but the last word predicts <eos>, a real token
    pooled = spliced_metrics(sae, lm, HOOK, list(SENTENCES), batch_size=2)
    per = ev.per_doc_spliced(sae, lm, HOOK, held)
    for key, w in (("ce_spliced", held.n_ce), ("ce_clean", held.n_ce),
                   ("ce_zero", held.n_ce), ("kl_spliced", held.n_kl)):  # fmt: skip
        assert (per[key] * w).sum() / w.sum() == pytest.approx(pooled[key], rel=1e-6)
    oracle = ev.per_doc_spliced(sae, lm, HOOK, held, oracle=True)
    assert not np.allclose(oracle["ce_spliced"], per["ce_spliced"])


def test_gradient_selection_is_plain_topk_at_beta_zero_and_differs_otherwise(lm):
    held = ev.held_out(lm, HOOK, SENTENCES[:3])
    grad = held.grads[0]
    assert grad.shape[:2] == held.batches[0]["input_ids"].shape and grad.abs().sum() > 0
    a = torch.randn(*grad.shape[:2], 16)
    plain = _sae("gradient_topk", beta=0.0)
    torch.testing.assert_close(ev.GradSelected(plain, grad).reconstruct(a), plain.reconstruct(a))
    strong = _sae("gradient_topk", beta=50.0)
    assert not torch.allclose(ev.GradSelected(strong, grad).reconstruct(a), strong.reconstruct(a))
    with pytest.raises(ValueError, match="gradient"):
        ev.GradSelected(strong, grad).reconstruct(a[:, :1])


def test_bootstrap_ratio_closed_forms():
    counts = ev.resample_counts(5, 400, seed=1)
    assert (counts.sum(1) == 5).all()
    w = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    flat = ev.bootstrap_ratio(2.5 * w, w, counts)  # every document has the value 2.5
    assert flat["value"] == flat["ci_low"] == flat["ci_high"] == pytest.approx(2.5)
    x = np.array([0.0, 1.0, 0.0, 3.0, 10.0])
    s = ev.bootstrap_ratio(w * x, w, counts)
    assert s["value"] == pytest.approx((w * x).sum() / w.sum())
    assert s["ci_low"] < s["value"] < s["ci_high"]
    with pytest.raises(ValueError, match=">= 2 documents"):
        ev.resample_counts(1, 10, seed=0)
    with pytest.raises(ValueError, match="disagree"):
        ev.bootstrap_ratio(w[:4], w[:4], counts)


def test_missing_model_names_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="experiments.tinylm.train"):
        run.main(["--fast", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_gsae_tinylm_fast(tmp_path):
    out = tmp_path / "gsae"
    model = tiny_gpt2_dir(tmp_path / "gpt2")
    assert run.main(["--fast", "--model", str(model), "--out", str(out), "--hook", HOOK]) == 0
    assert (out / "report.html").exists() and (out / "figures" / "ce_increase.png").exists()
    assert "## Verdict" in (out / "report.md").read_text()
    res = json.loads((out / "gsae_results.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert {(r["k"], r["method"]) for r in res["saes"]} == {
        (k, m) for k in (4, 8) for m in run.METHODS
    }
    for r in res["saes"]:  # equal L0: every method keeps exactly k latents per token
        assert r["l0"] == pytest.approx(r["k"]) and 0.0 < r["fvu"] < 1.5
    for k, e in res["summary"].items():
        for m in run.METHODS:
            s = e[m]["ce_increase"]
            assert s["ci_low"] <= s["value"] <= s["ci_high"]
            assert f"sae/ce_increase_ci_low/{m}_k{k}" in metrics
        d = e["gsae-topk"]["ce_increase"]
        direct = e["gsae"]["ce_increase"]["value"] - e["topk"]["ce_increase"]["value"]
        assert d["value"] == pytest.approx(direct, abs=1e-9)  # the paired mean is the gap
        assert f"sae/ce_increase/gsae_minus_topk_k{k}" in metrics
