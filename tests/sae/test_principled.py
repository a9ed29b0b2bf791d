import json

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from hiddenlens.sae import SAEConfig, build_sae
from hiddenlens.sae.principled import (
    MeanAdapter,
    NMFAdapter,
    PCAAdapter,
    SAEAdapter,
    SpliceTask,
    SupervisedAdapter,
    check_labels,
    control,
    reconstruct,
    spliced_approximation,
    task_activations,
)
from hiddenlens.sae.principled_diagnostics import (
    interpretability_table,
    occlusion_flags,
    over_splitting_flags,
)
from hiddenlens.sae.supervised import SupervisedDictionary


class TinyLM(nn.Module):
    """Tied embeddings, a causal mean over positions, a linear "mix" layer: the logit of a
    token is large when the token is in the prefix, so logit(present) - logit(absent) > 0."""

    def __init__(self, vocab=12, d=16, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Embedding(vocab, d)
        self.mix = nn.Linear(d, d)
        self.out = nn.Linear(d, vocab, bias=False)
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(vocab, d, generator=g))
            self.mix.weight.copy_(torch.eye(d) + 0.1 * torch.randn(d, d, generator=g))
            self.mix.bias.zero_()
            self.out.weight.copy_(self.emb.weight)

    def forward(self, tok):
        h = self.emb(tok).cumsum(1) / torch.arange(1, tok.shape[1] + 1)[None, :, None]
        return self.out(torch.relu(self.mix(h)) - torch.relu(-self.mix(h)))


def _tiny_task(n=200, seed=0):
    rng = np.random.default_rng(seed)
    toks = np.stack([rng.permutation(12)[:5] for _ in range(n)])  # 5 distinct tokens
    absent = np.array([[v for v in range(12) if v not in row][0] for row in toks])
    labels = {"first": toks[:, 0], "absent": absent}

    def metric(logits, lab):
        i = torch.arange(len(logits))
        return logits[i, torch.as_tensor(lab["first"])] - logits[i, torch.as_tensor(lab["absent"])]

    return SpliceTask(torch.as_tensor(toks), "mix", labels, metric, position=-1, batch_size=64)


def test_spliced_approximation_is_one_for_exact_and_zero_for_mean_dictionary():
    model, task = TinyLM(), _tiny_task()
    x = task_activations(model, task)
    assert x.shape == (200, 16)
    exact = spliced_approximation(PCAAdapter(None).fit(x), model, task, x=x)
    assert exact["metric_clean"] > exact["metric_mean_ablated"] + 1.0  # a real effect
    assert exact["approximation"] == pytest.approx(1.0, abs=1e-4)
    assert exact["fvu"] < 1e-8
    ablated = spliced_approximation(MeanAdapter().fit(x), model, task, x=x)
    assert ablated["approximation"] == pytest.approx(0.0, abs=1e-6)
    half = spliced_approximation(PCAAdapter(2).fit(x), model, task, x=x)
    assert half["approximation"] < 0.99  # a lossy dictionary loses task metric


def _planted(n=600, d=24, seed=0):
    rng = np.random.default_rng(seed)
    q = 3 * np.linalg.qr(rng.normal(size=(d, 7)))[0].T  # orthogonal attribute directions
    vecs = {"a": q[:4], "b": q[4:]}
    lab = {"a": rng.integers(0, 4, n), "b": rng.integers(0, 3, n)}
    x = vecs["a"][lab["a"]] + vecs["b"][lab["b"]] + 0.1 * rng.normal(size=(n, d))
    return x.astype(np.float32), lab, vecs


def _linear_task(x, lab, vecs_a):
    """Model = identity layer "0" then a readout whose logits are <u_a,v, x>."""
    model = nn.Sequential(nn.Linear(x.shape[1], x.shape[1]), nn.Linear(x.shape[1], 4, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(x.shape[1]))
        model[0].bias.zero_()
        w = vecs_a - vecs_a.mean(0)
        model[1].weight.copy_(torch.as_tensor(w, dtype=torch.float32))

    def metric(logits, labels):
        return logits[torch.arange(len(logits)), torch.as_tensor(labels["a"])]

    task = SpliceTask(torch.as_tensor(x), "0", lab, metric, lambda lb: lb["a"], position=None)
    return model, task


def test_supervised_control_edit_makes_the_output_follow_the_target():
    x, lab, vecs = _planted()
    model, task = _linear_task(x, lab, vecs["a"])
    sup = SupervisedAdapter(SupervisedDictionary().fit(x, lab))
    targets = (lab["a"] + 1) % 4
    res = control(sup, model, task, "a", targets)
    assert res["success_unedited"] == 0.0
    assert res["edit_success"] == 1.0 and res["edit_top1"] == 1.0
    assert res["logit_diff_shift"] > 0 and res["n_items"] == len(x)
    # full-rank PCA edits by the code-space class-mean difference: the same edit exactly
    pca = PCAAdapter(None).fit(x)
    np.testing.assert_allclose(
        pca.edit(x, lab, "a", targets), sup.edit(x, lab, "a", targets), atol=1e-3
    )
    with pytest.raises(ValueError, match="never changes"):
        control(sup, model, task, "a", lab["a"])


def test_adapters_round_trip():
    x, lab, _ = _planted()
    np.testing.assert_allclose(reconstruct(PCAAdapter(None).fit(x), x), x, atol=1e-4)
    sd = SupervisedDictionary().fit(x, lab)
    sup = SupervisedAdapter(sd)
    codes = sup.encode(x, lab)
    assert codes.shape == (len(x), 7) and torch.all(codes.sum(1) == 2)
    np.testing.assert_allclose(reconstruct(sup, x, lab), sd.reconstruct(lab), atol=1e-4)
    sae = build_sae(SAEConfig(d_in=24, d_sae=48, architecture="topk", k=4), seed=0)
    ad = SAEAdapter(sae)
    with torch.no_grad():
        want = sae.decode(sae.encode(torch.as_tensor(x)))
    np.testing.assert_allclose(reconstruct(ad, x), want.numpy(), atol=1e-5)
    assert ad.decoder_norms.shape == (48,)
    # NMF: signed data whose shift by the per-feature minimum is exactly rank-3 non-negative
    rng = np.random.default_rng(1)
    w = rng.uniform(0, 1, (300, 3)) * (rng.uniform(size=(300, 3)) < 0.5)
    w[:5] = 0.0  # rows at the minimum, so the shift recovers the offset exactly
    xn = w @ rng.uniform(0, 2, (3, 10)) - 1.5
    nmf = NMFAdapter(3, max_iter=2000).fit(xn)
    assert (nmf.encode(xn).numpy() >= 0).all()
    rec = reconstruct(nmf, xn)
    assert ((rec - xn) ** 2).sum() / ((xn - xn.mean(0)) ** 2).sum() < 1e-2


def test_interpretability_table_has_precision_and_recall():
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    codes = np.zeros((8, 2))
    codes[:2, 0] = 1.0  # precision 1, recall 0.5
    codes[:6, 1] = 1.0  # precision 4/6, recall 1
    row = [r for r in interpretability_table(codes, {"a": y}) if r["value"] == 1][0]
    assert row["best_latent"] == 1
    assert row["precision"] == pytest.approx(4 / 6) and row["recall"] == 1.0
    assert row["f1"] == pytest.approx(0.8)


def test_over_splitting_flag_counts_latents_needed_for_f1():
    y = np.array([1] * 8 + [0] * 8)
    codes = np.zeros((16, 6))
    for j in range(4):  # value 1 split over latents 0..3
        codes[2 * j : 2 * j + 2, j] = 1.0
    codes[8:, 4] = 1.0  # value 0 has one clean latent
    rows = {r["value"]: r for r in over_splitting_flags(codes, {"a": y})}
    assert rows[1]["latents_to_f1"] == 4 and rows[1]["over_split"]
    assert sorted(rows[1]["latents"]) == [0, 1, 2, 3]
    assert rows[0]["latents_to_f1"] == 1 and not rows[0]["over_split"]


def _occlusion_case(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n)
    b = np.where(a == 1, rng.uniform(size=n) < 0.9, rng.uniform(size=n) < 0.2).astype(int)
    codes = np.zeros((n, 3))
    codes[:, 1] = 3.0 * (b == 1)  # larger latent for the correlated attribute b ...
    codes[:, 0] = 1.0 * ((a == 1) & (b == 0))  # ... wins, so a's detector rarely fires
    codes[:, 2] = 0.5 * (a == 0)
    return codes, {"a": a, "b": b}


def test_occlusion_flag_fires_on_planted_occlusion_only():
    codes, lab = _occlusion_case()
    rows = {(r["attribute"], r["value"]): r for r in occlusion_flags(codes, lab)}
    hit = rows[("a", 1)]
    assert hit["occluded"] and hit["detector"] == 0 and hit["occluder"] == 1
    assert hit["occluder_covers"] == "b=1" and hit["detector_recall"] < 0.2
    assert not rows[("a", 0)]["occluded"]
    clean = codes.copy()
    clean[:, 0] = 1.0 * (lab["a"] == 1)  # the detector now fires on every row of a=1
    assert not any(r["occluded"] for r in occlusion_flags(clean, lab))
    # a narrow precise latent plus a broad, less precise latent of the value itself (it is
    # represented, just not precisely): not occlusion
    own = codes.copy()
    own[:, 1] = 3.0 * ((lab["a"] == 1) & (lab["b"] == 1) | (lab["a"] == 0) & (lab["b"] == 0))
    own[:, 1] *= np.arange(len(own)) % 10 < 8  # 80% of a=1 rows, ~16% of a=0 rows
    rows = {(r["attribute"], r["value"]): r for r in occlusion_flags(own, lab)}
    assert rows[("a", 1)]["own_recall"] > 0.5 and not rows[("a", 1)]["occluded"]
    # equal decoder-weighted magnitudes: no larger latent wins, no flag
    norms = np.array([3.0, 1.0, 1.0])
    assert not any(r["occluded"] for r in occlusion_flags(codes, lab, decoder_norms=norms))


def test_bad_input_is_rejected():
    x, lab, vecs = _planted(n=100)
    model, task = _linear_task(x, lab, vecs["a"])
    sup = SupervisedAdapter(SupervisedDictionary().fit(x, lab))
    with pytest.raises(ValueError, match="unknown attribute 'c'"):
        control(sup, model, task, "c", lab["a"])
    with pytest.raises(ValueError, match="single value"):
        check_labels({"a": np.zeros(5)}, 5, "a")
    with pytest.raises(ValueError, match="one value per row"):
        SpliceTask(task.inputs, "0", {"a": lab["a"][:-1]}, task.metric)
    with pytest.raises(ValueError, match="one value per row"):
        sup.encode(x, {"a": lab["a"][:-1], "b": lab["b"]})
    with pytest.raises(ValueError, match="pass labels"):
        sup.encode(x)
    with pytest.raises(ValueError, match="unknown values"):
        sup.encode(x, {"a": lab["a"] + 10, "b": lab["b"]})
    with pytest.raises(ValueError, match="unknown values"):
        sup.edit(x, {"a": lab["a"] + 10, "b": lab["b"]}, "a", 1)
    with pytest.raises(ValueError, match="not a value"):
        sup.edit(x, lab, "a", 9)
    with pytest.raises(ValueError, match="rows but the task"):
        spliced_approximation(sup, model, task, x=x[:-1])
    with pytest.raises(ValueError, match="rows but the task"):
        control(sup, model, task, "a", 1, x=x[:-1])
    with pytest.raises(ValueError, match="one value per row"):
        control(sup, model, task, "a", lab["a"][:-1])
    with pytest.raises(NotFittedError, match="not fitted"):
        PCAAdapter(3).encode(x)
    with pytest.raises(ValueError, match="decoder_norms"):
        occlusion_flags(np.zeros((4, 3)), {"a": np.array([0, 1, 0, 1])}, decoder_norms=[1.0])
    with pytest.raises(TypeError, match="non-empty dict"):
        check_labels([1, 2], 2)


def test_experiment_fast_runs(tmp_path):
    pytest.importorskip("transformer_lens")
    from experiments.sae_principled.run import main

    assert main(["--fast", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "report.html").exists()
    res = json.loads((tmp_path / "principled.json").read_text())
    rows = {r["dictionary"]: r for r in res["blocks.1.hook_resid_mid"]["summary"]}
    assert abs(rows["mean_ablation"]["approximation"]) < 0.05
    # the hook mediates the whole output, so the supervised IO edit must carry through
    assert rows["supervised"]["edit_success"] >= 0.9
    assert {"precision", "recall"} <= set(res["blocks.1.hook_resid_mid"]["interpretability"][0])
    # Makelov et al.'s search: the supervised dictionary edits IO with its two one-hot codes
    rows = res["blocks.1.hook_resid_mid"]["edit_search"]
    search = {(r["dictionary"], r["rank_by"]): r for r in rows}
    sup = search[("supervised", "output")]
    assert sup["success_full"] >= 0.9 and sup["min_latents"] is not None
    assert sup["min_latents"] <= 2 and sup["mean_candidates"] <= 2.0
    assert 1.0 <= sup["mean_set_size"] <= 2.0
