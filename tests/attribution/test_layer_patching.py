"""Layer / SAE / token attribution, patching and the TransformerLens lenses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hiddenlens.attribution as A
from hiddenlens.attribution.lens import direct_logit_attribution, logit_lens


def test_layer_methods_match_captum(mlp):
    captum = pytest.importorskip("captum.attr")
    x = torch.randn(4, 8)
    ours = A.layer_gradient_x_activation(mlp, x, ["1", "3"], target=2)
    ref = captum.LayerGradientXActivation(mlp, mlp[1]).attribute(x, target=2)
    assert torch.allclose(ours["1"].attributions, ref, atol=1e-6)
    base = torch.randn(4, 8)
    lig = A.layer_integrated_gradients(mlp, x, "2", target=2, baseline_inputs=base, n_steps=24)
    ref = captum.LayerIntegratedGradients(mlp, mlp[2]).attribute(
        x, baselines=base, target=2, n_steps=24
    )
    assert torch.allclose(lig.attributions, ref, atol=1e-5)
    # completeness at the layer: F(x) - F(baseline activation)
    assert lig.delta.abs().max() < 1e-2
    out = mlp(x)[:, 2] - mlp(base)[:, 2]
    assert torch.allclose(lig.per_example_sum(), out.detach(), atol=1e-2)


class LinearSAE:
    """encode/decode with a linear decoder: latent IG is exact and equals latent x gradient."""

    def __init__(self, d: int, n: int):
        g = torch.Generator().manual_seed(1)
        self.enc = torch.randn(d, n, generator=g)
        self.dec = torch.randn(n, d, generator=g) / n

    def encode(self, x):
        return torch.relu(x @ self.enc)

    def decode(self, z):
        return z @ self.dec


def test_sae_latent_attribution():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 6), nn.Linear(6, 2))  # downstream of "0" is linear
    sae = LinearSAE(6, 10)
    x = torch.randn(3, 5)
    gxa = A.sae_latent_attribution(model, x, "0", sae, target=1)
    ig = A.sae_latent_attribution(
        model, x, "0", sae, target=1, method="integrated_gradients", n_steps=4
    )
    assert gxa.attributions.shape == (3, 10)
    assert torch.allclose(gxa.attributions, ig.attributions, atol=1e-5)
    assert ig.delta.abs().max() < 1e-5
    # closed form: z_j * (dec_j . W2[1])
    z = sae.encode(model[0](x))
    expected = z * (sae.dec @ model[1].weight[1].detach())[None]
    assert torch.allclose(gxa.attributions, expected.detach(), atol=1e-5)
    # with the error term the spliced model returns the original output
    assert torch.allclose(gxa.target_values, model(x)[:, 1].detach(), atol=1e-5)
    with pytest.raises(TypeError, match="encode"):
        A.sae_latent_attribution(model, x, "0", object(), target=1)


def test_token_attributions_tiny_bert(tiny_bert):
    from hiddenlens.hooks import ModelHandle

    model, tok = tiny_bert
    handle = ModelHandle(model=model, tokenizer=tok, kind="hf", model_id="tiny")
    texts = ["the cat sat on the mat", "a dog ran"]
    ref = handle.embed(["hello world"])[0]
    res = A.token_attributions(handle, texts, A.similarity_target(ref), n_steps=64)
    assert [len(t) for t in res.tokens] == [8, 5]  # [CLS] ... [SEP], padding dropped
    assert res.tokens[1][0] == "[CLS]" and len(res.scores[1]) == 5
    assert np.abs(res.delta).max() < 5e-3
    emb = handle.embed(texts)
    assert np.allclose(res.target_values, (emb @ ref).numpy(), atol=1e-5)
    gxa = A.token_attributions(handle, texts, A.embedding_dim_target(3), method="grad_x_act")
    assert gxa.delta is None and len(gxa.top(0, 3)) == 3


def _seq_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2))


def test_activation_patching_restores_clean_exactly():
    model = _seq_model()
    clean, corr = torch.randn(2, 5, 4), torch.randn(2, 5, 4)

    def metric(out):
        return out[:, -1, 0].mean() - out[:, -1, 1].mean()

    whole = A.activation_patching(model, clean, corr, ["0", "2", "4"], metric, per_position=False)
    for name in whole.effects:  # patching a whole layer of the clean run restores the clean output
        assert whole.effects[name][0] == pytest.approx(
            whole.clean_metric - whole.corrupted_metric, abs=1e-6
        )
        assert whole.normalised()[name][0] == pytest.approx(1.0, abs=1e-6)
    per = A.activation_patching(model, clean, corr, "2", metric)
    assert per.effects["2"].shape == (5,)
    assert np.allclose(per.effects["2"][:4], 0, atol=1e-7)  # the metric reads position -1 only


def test_attribution_patching_equals_activation_patching_on_linear():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 5), nn.Linear(5, 2))
    clean, corr = torch.randn(3, 7, 4), torch.randn(3, 7, 4)

    def metric(out):
        return (out[..., 0] - 0.5 * out[..., 1]).mean()

    act = A.activation_patching(model, clean, corr, ["0", "1"], metric)
    att = A.attribution_patching(model, clean, corr, ["0", "1"], metric)
    for name in act.effects:
        assert np.allclose(act.effects[name], att.effects[name], atol=1e-5)
    cmp = A.compare_patching(act, att)
    assert cmp["attribution/patching_pearson"] > 0.9999
    assert cmp["attribution/patching_max_abs_diff"] < 1e-5
    assert cmp["attribution/patching_top5_overlap"] == 1.0
    # a nonlinear model: the estimate differs but is reported, not hidden
    nl = A.compare_patching(
        A.activation_patching(_seq_model(), clean, corr, ["0", "2"], metric),
        A.attribution_patching(_seq_model(), clean, corr, ["0", "2"], metric),
    )
    names = ("pearson", "spearman", "max_abs_diff", "top5_overlap")
    assert set(nl) == {f"attribution/patching_{n}" for n in names}


def test_back_patching_planted():
    torch.manual_seed(0)
    model = nn.Sequential(*[nn.Linear(3, 3, bias=False) for _ in range(3)])
    for layer in model[1:]:  # the same map three times: out_j = W^(j+1) x
        layer.weight.data.copy_(model[0].weight.data)
    lin = model[0]
    x = torch.randn(2, 4, 3)
    res = A.back_patching(model, x, ["0", "1", "2"], lambda o: o.sum(), position=None)
    W = lin.weight.detach()
    # the state after layer 1 (W^2 x) injected after layer 0 runs through 2 more layers: W^4 x
    expected = (x @ torch.linalg.matrix_power(W, 4).T).sum()
    assert res.metric[1, 0] == pytest.approx(float(expected), rel=1e-5)
    assert np.isnan(res.metric[0, 0]) and np.isnan(res.metric[0, 1]) and np.isnan(res.metric[1, 2])
    assert res.best()[0] in ("1", "2")


def test_dla_and_logit_lens(tiny_tl):
    model = tiny_tl
    tokens = torch.randint(0, 20, (3, 6))
    dla = direct_logit_attribution(model, tokens, answer=[1, 2, 3], counterfactual=4)
    assert dla.total == pytest.approx(dla.logit, abs=1e-4)  # components sum to the logit difference
    assert dla.heads.shape == (2, 4) and len(dla.top(3)) == 3
    lens = logit_lens(model, tokens, 5)
    assert lens.ranks.shape == (3, 3)  # (n_layers + 1 stages) x batch
    final = model(tokens)[:, -1]
    true_rank = (final > final[:, 5:6]).sum(1).numpy()
    assert np.array_equal(lens.ranks[-1], true_rank)
    with pytest.raises(TypeError, match="HookedTransformer"):
        logit_lens(nn.Linear(2, 2), tokens, 1)
    with pytest.raises(ValueError, match="out of range"):
        direct_logit_attribution(model, tokens, answer=99)


def _tiny_norm_model(normalization_type: str):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_mlp=32, d_vocab=20,
        act_fn="gelu", normalization_type=normalization_type, seed=1,
    )
    model = HookedTransformer(cfg).eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # a trained-looking final norm: non-unit weight, non-zero bias
        model.ln_final.w.copy_(0.5 + 1.5 * torch.rand(16, generator=g))
        if hasattr(model.ln_final, "b"):
            model.ln_final.b.copy_(torch.randn(16, generator=g))
        model.b_U.copy_(0.3 * torch.randn(20, generator=g))
    return model


@pytest.mark.parametrize("norm", ["LN", "RMS"])
def test_dla_complete_with_random_final_norm(norm):
    model = _tiny_norm_model(norm)
    tokens = torch.randint(0, 20, (4, 6), generator=torch.Generator().manual_seed(0))
    dla = direct_logit_attribution(model, tokens, answer=[1, 2, 3, 5], counterfactual=4)
    assert dla.total == pytest.approx(dla.logit, abs=1e-4)
    if norm == "LN":
        assert abs(dla.components["ln_final_bias"]) > 1e-3  # the bias is its own component
    else:
        assert dla.components["ln_final_bias"] == 0.0


def test_dla_equals_transformer_lens_logit_attrs_when_folded():
    import copy

    model = _tiny_norm_model("LN")
    folded = copy.deepcopy(model)
    folded.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    tokens = torch.randint(0, 20, (4, 6), generator=torch.Generator().manual_seed(0))
    ans, cf = torch.tensor([1, 2, 3, 5]), torch.tensor([4, 4, 4, 4])
    ours = direct_logit_attribution(model, tokens, answer=ans, counterfactual=cf)
    _, cache = folded.run_with_cache(tokens)
    # logit_attrs applies the final norm's cached scale itself
    comps, labels = cache.decompose_resid(layer=-1, pos_slice=-1, return_labels=True)
    ref = cache.logit_attrs(comps, ans, incorrect_tokens=cf, pos_slice=-1).mean(1)  # [C]
    for lab, r in zip(labels, ref):
        assert ours.components[lab] == pytest.approx(float(r), abs=1e-5)
    # unfolded: the norm's bias is a component; folded: it sits in the unembedding bias
    b_u = float((folded.b_U[ans] - folded.b_U[cf]).mean())
    b_u_own = float((model.b_U[ans] - model.b_U[cf]).mean())
    assert ours.components["ln_final_bias"] + b_u_own == pytest.approx(b_u, abs=1e-5)
    on_folded = direct_logit_attribution(folded, tokens, answer=ans, counterfactual=cf)
    assert on_folded.total == pytest.approx(ours.total, abs=1e-4)


def test_dla_head_grid_and_rest_split_the_logit_and_the_figure_shows_them():
    from hiddenlens.viz.attribution import plot_head_dla

    model = _tiny_norm_model("LN")
    with torch.no_grad():  # non-zero attention output biases: b_O is its own column
        for block in model.blocks:
            block.attn.b_O.copy_(0.2 * torch.randn(16, generator=torch.Generator().manual_seed(5)))
    tokens = torch.randint(0, 20, (4, 6), generator=torch.Generator().manual_seed(0))
    dla = direct_logit_attribution(model, tokens, answer=[1, 2, 3, 5], counterfactual=4)
    grid, cols = dla.head_grid()
    assert grid.shape == (2, 6) and cols == ["H0", "H1", "H2", "H3", "b_O", "MLP"]
    assert np.allclose(grid[:, :4], dla.heads)
    assert np.abs(grid[:, 4]).max() > 1e-3  # the bias column is not folded into the heads
    rest = dla.rest()
    assert set(rest) == {"embed", "pos_embed", "ln_final_bias", "unembed_bias"}
    assert grid.sum() + sum(rest.values()) == pytest.approx(dla.logit, abs=1e-4)
    fig = plot_head_dla(dla, title="t")
    ax = fig.axes[0]
    assert np.allclose(ax.images[0].get_array(), grid)
    assert [t.get_text() for t in ax.get_xticklabels()] == cols
    assert "unembed_bias" in ax.get_xlabel()
    bare = plot_head_dla(dla.heads)  # a plain [n_layers, n_heads] array: heads only
    assert np.allclose(bare.axes[0].images[0].get_array(), dla.heads)
    with pytest.raises(ValueError, match="n_layers, n_heads"):
        plot_head_dla(np.zeros(3))
    with pytest.raises(ValueError, match="attn_out"):
        dla.layer_component("resid")


class _AddStep(nn.Module):
    """One 'hop' of a planted stack: h -> h + c, so after layer k the state is x + (k+1) c."""

    def forward(self, h):
        return h + 1.0


def test_back_patching_sweep_closed_form():
    # answer feature x + n_layers (4 steps) must reach 6: queries with x < 2 fail. Injecting
    # layer j's state (x + j + 1) at layer i runs 4 - i - 1 more steps: x + 4 + (j - i) >= 6
    # fixes a query iff x >= 2 - (j - i), so a longer jump back fixes more.
    model = nn.Sequential(*[_AddStep() for _ in range(4)])
    x = torch.tensor([-2.0, -0.5, 0.5, 1.5, 2.5, 3.0]).reshape(6, 1, 1).expand(6, 3, 1).clone()
    sweep = A.back_patching_sweep(
        model, x, ["0", "1", "2", "3"], lambda out: out[:, -1, 0] >= 6.0, position=-1
    )
    xs = x[:, -1, 0].numpy()
    assert np.array_equal(sweep.baseline, xs + 4 >= 6)
    frac = sweep.fixed_fraction()
    failed = xs[xs + 4 < 6]
    for j in range(4):
        for i in range(4):
            if i < j:
                assert frac[j, i] == pytest.approx(np.mean(failed + 4 + (j - i) >= 6))
                assert np.array_equal(sweep.correct[j, i], xs + 4 + (j - i) >= 6)
            else:
                assert np.isnan(frac[j, i]) and not sweep.correct[j, i].any()
    assert sweep.fixed_by_any() == pytest.approx(np.mean(failed + 4 + 3 >= 6))  # 3 of 4
    assert sweep.best() == ("3", "0", pytest.approx(0.75))
    assert np.nanmax(sweep.broken_fraction()) == 0.0  # adding steps never breaks a query
    m = sweep.to_metrics()
    assert m["attribution/back_patching_fixed_by_any"] == pytest.approx(0.75)
    assert m["attribution/back_patching_baseline_accuracy"] == pytest.approx(2 / 6)
    # only the patched position moves: patching position 0 leaves the read-out position alone
    first = A.back_patching_sweep(model, x, ["0", "1", "2", "3"], lambda o: o[:, -1, 0] >= 6.0,
                                  position=0)  # fmt: skip
    assert first.fixed_by_any() == 0.0
    with pytest.raises(TypeError, match="bool tensor"):
        A.back_patching_sweep(model, x, ["0", "1"], lambda o: o.sum())
    with pytest.raises(ValueError, match="out of range"):
        A.back_patching_sweep(model, x, ["0", "1"], lambda o: o[:, -1, 0] > 0, position=5)


def test_back_patching_sweep_figure_shows_the_lower_triangle():
    from hiddenlens.viz.attribution import plot_back_patching

    model = nn.Sequential(*[_AddStep() for _ in range(3)])
    x = torch.linspace(-1, 3, 8).reshape(8, 1, 1).expand(8, 2, 1).clone()
    sweep = A.back_patching_sweep(model, x, ["0", "1", "2"], lambda o: o[:, -1, 0] >= 4.0)
    fig = plot_back_patching(sweep)
    shown = np.ma.filled(fig.axes[0].images[0].get_array(), np.nan)
    lower = np.tri(3, k=-1, dtype=bool)
    assert np.allclose(shown[lower], sweep.fixed_fraction()[lower])
    assert np.isnan(shown[~lower]).all()
    assert "failed queries fixed" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="labels"):
        plot_back_patching(np.zeros((3, 3)), labels=["a"])


def test_back_patching_sweep_on_transformer_lens_equals_run_with_hooks(tiny_tl):
    model = tiny_tl
    tokens = torch.randint(0, 20, (12, 6), generator=torch.Generator().manual_seed(2))
    hooks = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    hooks = ["blocks.0.hook_resid_pre"] + hooks
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        answers = model(tokens)[:, -1].topk(2).indices[:, 1]  # the runner-up: all queries fail

    def correct(out):
        return out[:, -1].argmax(-1) == answers

    sweep = A.back_patching_sweep(model, tokens, hooks, correct)
    assert not sweep.baseline.any()
    for j in range(1, len(hooks)):
        for i in range(j):

            def inject(act, hook, j=j):
                act[:, -1] = cache[hooks[j]][:, -1]
                return act

            with torch.no_grad():
                ref = model.run_with_hooks(tokens, fwd_hooks=[(hooks[i], inject)])
            assert np.array_equal(sweep.correct[j, i], correct(ref).numpy())
    assert sweep.correct.any()  # some back-patches do change the answer here
    assert sweep.fixed_by_any() == pytest.approx(sweep.correct.any((0, 1)).mean())
