"""The tuned lens (Belrose et al. 2023): a planted affine answer, identity init = logit lens,
the decoder reproduces the model's logits, and tuned KL <= logit-lens KL on tiny LMs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens.attribution import LensDecoder, TunedLens, lens_decoder, logit_lens, next_token_ids
from hiddenlens.hooks import capture
from hiddenlens.store import cache_activations
from tests import _models


def _planted(n=3000, d=12, vocab=24):
    """h_mid = M h_final + c with M invertible: the exact translator is M^-1, -M^-1 c."""
    g = torch.Generator().manual_seed(0)
    dec = LensDecoder(nn.LayerNorm(d), torch.randn(d, vocab, generator=g) * 2)
    final = torch.randn(n, d, generator=g)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    M = q * torch.linspace(0.7, 1.5, d)
    mid = final @ M.T + torch.randn(d, generator=g)
    return dec, {"mid": mid.numpy(), "final": final.numpy()}


def test_planted_affine_map_is_recovered():
    dec, X = _planted()
    lens = TunedLens(dec, n_steps=300, lr=3.0, batch_size=256).fit(X)
    res = lens.evaluate(X)
    assert res.hooks == ["mid", "final"] and lens.final_hook_ == "final"
    assert res.kl_logit[0] > 5.0  # the logit lens reads the wrong basis
    assert res.kl_tuned[0] < 0.01 * res.kl_logit[0]
    assert res.kl_logit[1] == res.kl_tuned[1] == 0.0  # the final layer is the model's output
    m = res.to_metrics()
    assert m["attribution/tuned_lens_kl/mid"] == pytest.approx(res.kl_tuned[0])
    assert "attribution/logit_lens_ppl/mid" not in m  # no next tokens given


def test_zero_steps_is_the_logit_lens_and_matches_transformer_lens():
    model = _models.tiny_hooked_transformer()
    tokens = torch.randint(0, 20, (6, 12), generator=torch.Generator().manual_seed(1))
    _, cache = model.run_with_cache(tokens)
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    X = {h: cache[h][:, -1].detach().numpy() for h in hooks}
    lens = TunedLens(model, n_steps=0).fit(X)
    assert torch.equal(lens.weight_[0], torch.eye(16)) and not lens.bias_.any()
    answer = torch.arange(6) % 20
    ref = logit_lens(model, tokens, answer)  # stages: embed, 0_post (= 1_pre), final_post
    for stage, hook in ((1, hooks[0]), (2, hooks[1])):
        p = lens.lens_logits(X[hook], hook).softmax(-1)[torch.arange(6), answer]
        np.testing.assert_allclose(p.numpy(), ref.probs[stage], rtol=1e-5, atol=1e-7)
    res = lens.evaluate(X)
    np.testing.assert_array_equal(res.kl_tuned, res.kl_logit)
    assert res.kl_logit[0] > 0 and res.kl_logit[1] < 1e-6


def _tl_store(tmp_path):
    model = _models.tiny_hooked_transformer()
    tokens = torch.randint(0, 20, (96, 12), generator=torch.Generator().manual_seed(0))
    store = cache_activations(model, tokens, ["hook_embed", "blocks.*.hook_resid_post"],
                              tmp_path / "store")
    return model, store


def test_decoder_of_the_final_residual_is_the_model_output(tmp_path, tiny_gpt2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tl = _models.tiny_hooked_transformer()
    tokens = torch.randint(0, 20, (2, 12), generator=torch.Generator().manual_seed(2))
    logits, cache = tl.run_with_cache(tokens)
    out = lens_decoder(tl)(cache["blocks.1.hook_resid_post"])
    torch.testing.assert_close(out, logits, rtol=1e-5, atol=1e-5)
    for path, last in ((tiny_gpt2_dir, "transformer.h.1"),
                       (_models.tiny_llama_dir(tmp_path / "llama"), "model.layers.1")):
        hf = AutoModelForCausalLM.from_pretrained(str(path)).eval()
        enc = AutoTokenizer.from_pretrained(str(path))(_models.SENTENCES[:2], return_tensors="pt",
                                                       padding=True)
        with torch.no_grad(), capture(hf, [last], stop_early=False) as cap:
            logits = cap.run(**enc).logits
        # the last block's own output, before the final norm, decodes to the model's logits
        torch.testing.assert_close(lens_decoder(str(path))(cap[last]), logits, rtol=1e-4, atol=1e-4)


def test_tuned_beats_logit_lens_on_held_out_rows_of_a_tiny_transformer_lens_model(tmp_path):
    _, store = _tl_store(tmp_path)
    half = np.asarray(store.meta["sample_idx"]) < 48
    X = {h: store.rows(h) for h in store.hook_points}
    train = {h: x[half] for h, x in X.items()}
    test = {h: x[~half] for h, x in X.items()}
    nxt = next_token_ids(store.meta)[~half]
    lens = TunedLens(_models.tiny_hooked_transformer(), n_steps=150, batch_size=128).fit(train)
    res = lens.evaluate(test, next_tokens=nxt)
    assert res.hooks[-1] == "blocks.1.hook_resid_post"
    assert np.all(res.kl_tuned[:-1] < res.kl_logit[:-1])
    assert res.kl_tuned[0] < 0.5 * res.kl_logit[0]  # the embedding layer gains the most
    assert res.n_tokens == int((nxt >= 0).sum()) == 48 * 11
    assert res.ppl_logit[-1] == pytest.approx(res.ppl_final)


def test_tuned_beats_logit_lens_on_a_tiny_gpt2_by_path(tmp_path, tiny_gpt2_dir):
    store = cache_activations(str(tiny_gpt2_dir), _models.SENTENCES * 6,
                              ["transformer.drop", "transformer.h.*"], tmp_path / "store")
    lens = TunedLens(str(tiny_gpt2_dir), n_steps=100, batch_size=128).fit(store)
    res = lens.evaluate(store, next_tokens=next_token_ids(store.meta))
    assert res.hooks == ["transformer.drop", "transformer.h.0", "transformer.h.1"]
    assert np.all(res.kl_tuned[:-1] < res.kl_logit[:-1]) and res.kl_tuned[-1] == 0.0
    assert np.all(res.kl_logit[:-1] > 0)
    # the TransformerLens-only logit_lens points a Hugging Face causal LM here, where an
    # unfitted lens is the logit lens
    zero = TunedLens(str(tiny_gpt2_dir), n_steps=0).fit(store).evaluate(store)
    np.testing.assert_allclose(zero.kl_tuned, zero.kl_logit, atol=1e-6)
    with pytest.raises(TypeError, match=r"TunedLens\(model, n_steps=0\) is the logit lens"):
        logit_lens(_models.tiny_gpt2(), torch.zeros(1, 3, dtype=torch.long), 1)


def test_next_token_ids_follow_positions_within_a_sample():
    meta = {"sample_idx": [0, 0, 0, 1, 1, 2], "position": [1, 2, 4, 0, 1, 0],
            "token_id": [5, 6, 7, 8, 9, 3]}
    order = [3, 0, 5, 1, 4, 2]  # rows need not be sorted
    shuffled = {k: np.asarray(v)[order] for k, v in meta.items()}
    np.testing.assert_array_equal(next_token_ids(meta), [6, -1, -1, 9, -1, -1])
    np.testing.assert_array_equal(next_token_ids(shuffled), np.asarray([6, -1, -1, 9, -1, -1])[order])
    with pytest.raises(ValueError, match="token_id"):
        next_token_ids({"sample_idx": [0], "position": [0]})
    with pytest.raises(ValueError, match=r"one length, got shapes \(2,\), \(1,\), \(2,\)"):
        next_token_ids({"sample_idx": [0, 0], "position": [0], "token_id": [1, 2]})


def test_bad_input_names_the_value(tmp_path, tiny_bert_dir):
    dec, X = _planted(n=50)
    with pytest.raises(ValueError, match="n_steps"):
        TunedLens(dec, n_steps=-1).fit(X)
    with pytest.raises(ValueError, match="nope"):
        TunedLens(dec, n_steps=1).fit(X, final_hook="nope")
    with pytest.raises(ValueError, match="logits must be"):
        TunedLens(dec, n_steps=1).fit(X, logits=np.zeros((3, 24)))
    with pytest.raises(ValueError, match="d_model 12"):
        TunedLens(dec, n_steps=1).fit({"a": np.zeros((5, 4)), "final": np.zeros((5, 12))})
    with pytest.raises(ValueError, match="no unembedding"):
        lens_decoder(str(tiny_bert_dir))
    lens = TunedLens(dec, n_steps=1).fit(X)
    with pytest.raises(ValueError, match="no translator"):
        lens.translate(X["mid"], "other")
    with pytest.raises(ValueError, match="next_tokens must be"):
        lens.evaluate(X, next_tokens=np.zeros(3))
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        lens.evaluate(X, batch_size=0)
    for bad in ({"lr": "1.0"}, {"lr": None}, {"weight_decay": float("nan")}):
        with pytest.raises(ValueError, match=repr(next(iter(bad.values())))[:4]):
            TunedLens(dec, n_steps=1, **bad).fit(X)


def test_given_logits_train_every_hook_including_the_last():
    dec, X = _planted(n=400)
    target = dec(torch.as_tensor(X["final"])).detach().numpy()
    lens = TunedLens(dec, n_steps=300, lr=3.0, batch_size=128).fit({"mid": X["mid"]}, target)
    res = lens.evaluate({"mid": X["mid"]}, target)
    assert lens.final_hook_ == "mid" and res.kl_tuned[0] < 0.1 * res.kl_logit[0]


def test_clone_keeps_parameters_not_the_fit():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    dec, X = _planted(n=100)
    lens = TunedLens(dec, n_steps=3, lr=0.5, batch_size=16, seed=4)
    with pytest.raises(NotFittedError):
        lens.evaluate(X)
    fitted = lens.fit(X)
    twin = clone(fitted)
    assert {k: v for k, v in twin.get_params().items() if k != "decoder"} == {
        "n_steps": 3, "lr": 0.5, "batch_size": 16, "weight_decay": 1e-3, "seed": 4}
    assert not hasattr(twin, "weight_")
    torch.testing.assert_close(twin.fit(X).weight_, fitted.weight_)  # seeded: same fit


def test_plot_lens_comparison_draws_both_lenses():
    from hiddenlens.viz.lens import plot_lens_comparison

    dec, X = _planted(n=200)
    res = TunedLens(dec, n_steps=20, lr=3.0, batch_size=64).fit(X).evaluate(X)
    ax = plot_lens_comparison(res).axes[0]
    lines = {ln.get_label(): ln.get_ydata() for ln in ax.get_lines()}
    np.testing.assert_allclose(lines["logit lens"][0], res.kl_logit[0])
    np.testing.assert_allclose(lines["tuned lens"][0], res.kl_tuned[0])
    assert np.isnan(lines["tuned lens"][1])  # KL 0 at the final layer: off the log axis
    with pytest.raises(ValueError, match="ppl_logit"):
        plot_lens_comparison(res, metric="perplexity")
    with pytest.raises(ValueError, match="metric must be"):
        plot_lens_comparison(res, metric="ce")
