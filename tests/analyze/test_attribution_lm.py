"""The attribution section's language-model parts: per-head DLA on a TransformerLens model
(complete: the terms sum to the logit difference), back-patching on text prefixes (TL and an
HF GPT-2 by path, where DLA is explained as not run), and the query / answer selection on a
model whose next token is planted."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

import hiddenlens
from hiddenlens import metric_key
from hiddenlens.analyze.sections import attribution_lm as lm
from hiddenlens.analyze.sections.attribution import _texts
from tests import _models
from tests.analyze.test_matrix import _text_corpus

PAIR = ["the cat sat .", "the dog sat ."]


def _raw(spec, source, hooks, **attribution):
    return {"model": {"spec": spec, "batch_size": 8}, "data": {"source": source},
            "cache": {"hooks": hooks},
            "attribution": {"examples": 3, "n_steps": 4, "pair": PAIR, "back_patching_queries": 8,
                            **attribution}}


def _m(metrics, name, where=None):
    return metrics[metric_key("attribution", name, where)]


def test_tl_text_dla_is_complete_and_back_patching_runs(tmp_path, tiny_tl_text):
    hooks = ["blocks.*.hook_resid_pre", "blocks.*.hook_resid_post"]
    raw = _raw(tiny_tl_text, _text_corpus(tmp_path, n=12), hooks)
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    m = result.metrics
    assert abs(_m(m, "dla_total") - _m(m, "dla_logit_diff")) < 1e-4
    assert _m(m, "dla_completeness_abs_error") < 1e-4
    assert _m(m, "dla_logit_diff") > 0  # top-1 minus runner-up: positive unless they tie
    layers = [_m(m, "dla_layer", f"blocks.{i}") for i in range(2)]
    assert np.isfinite(layers).all()
    assert _m(m, "back_patching_n_queries") == 8
    assert 0 <= _m(m, "back_patching_baseline_accuracy") <= 1
    assert _m(m, "back_patching_n_failed") == pytest.approx(8 * (1 - _m(m, "back_patching_baseline_accuracy")))
    figures = tmp_path / "run" / "figures"
    assert (figures / "dla_heads.png").exists() and (figures / "back_patching.png").exists()
    html = result.report.read_text()
    # the four hooks swept in forward order (natural name order would put post before pre)
    assert ("blocks.0.hook_resid_pre, blocks.0.hook_resid_post, blocks.1.hook_resid_pre, "
            "blocks.1.hook_resid_post") in html


def test_gpt2_by_path_back_patches_and_says_why_no_dla(tmp_path, tiny_gpt2_dir):
    """Back-patching's unpatched accuracy equals the HF model's own top-1 on the same
    prefixes (no padding is involved); DLA is explained, not faked."""
    from transformers import AutoModelForCausalLM

    raw = _raw(str(tiny_gpt2_dir), _text_corpus(tmp_path, n=12), ["transformer.h.*"])
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    m = result.metrics
    assert not any("/dla_" in k for k in m)
    assert "Per-head DLA not run" in result.report.read_text()
    assert "HookedTransformer" in result.report.read_text()
    handle = hiddenlens.load_model(str(tiny_gpt2_dir))
    corpus = SimpleNamespace(texts=[_models.SENTENCES[i % 6] for i in range(12)])
    seqs = lm.lm_sequences(handle, _texts(corpus, 8), None, 32)  # the section's texts
    queries = lm.prefix_queries(seqs, 8, 23)  # the section's draw (ctx.seed 0 + 23)
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2_dir)).eval()
    with torch.no_grad():
        hits = [int(ref(p[None]).logits[0, -1].argmax()) == a for p, a in queries]
    assert _m(m, "back_patching_baseline_accuracy") == pytest.approx(np.mean(hits))
    assert _m(m, "back_patching_n_queries") == len(queries) == 8


@pytest.fixture
def planted_tl(tiny_tl_text):
    """The tiny TL model with W_U = 0 and a planted b_U: its next token is always token 7,
    the runner-up token 5, whatever the input."""
    import copy

    model = copy.deepcopy(tiny_tl_text)
    with torch.no_grad():
        model.W_U.zero_()
        model.b_U.copy_(torch.linspace(-1, 0, model.cfg.d_vocab_out))
        model.b_U[7], model.b_U[5] = 3.0, 2.5
    return hiddenlens.load_model(model)


def test_planted_next_token_selection_and_dla(planted_tl):
    seqs = lm.lm_sequences(planted_tl, _models.SENTENCES[:3], None, 16)
    tok = planted_tl.tokenizer
    for s, text in zip(seqs, _models.SENTENCES):
        words = tok.convert_ids_to_tokens(s.ids[s.word].tolist())
        assert words == text.split()  # specials (<bos>, <eos>) are kept but not words
        prefix, a, c = lm.top_two(planted_tl, s)
        assert (a, c) == (7, 5)
        assert tok.convert_ids_to_tokens(int(prefix[-1])) == "."  # the last word, not <eos>
    dla, picked = lm.head_dla(planted_tl, seqs)
    assert len(picked) == 3
    # only the unembedding bias reaches the logits: b_U[7] - b_U[5], nothing through a head
    assert dla.logit == pytest.approx(0.5, abs=1e-6) and dla.total == pytest.approx(0.5, abs=1e-6)
    assert np.abs(dla.heads).max() < 1e-6


def test_planted_prefix_queries_and_sweep(planted_tl):
    """Each query's answer is the token after its prefix (a word); with W_U = 0 the model is
    right exactly where that token is 7, and no back-patch can change an output."""
    seqs = lm.lm_sequences(planted_tl, _models.SENTENCES, None, 16)
    queries = lm.prefix_queries(seqs, 12, seed=0)
    assert len(queries) == 12
    for prefix, answer in queries:
        src = next(s for s in seqs if torch.equal(s.ids[: len(prefix)], prefix) and len(s.ids) > len(prefix))
        assert int(src.ids[len(prefix)]) == answer and bool(src.word[len(prefix)])
        assert len(prefix) >= lm.MIN_PREFIX
    hooks = ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_pre", "blocks.1.hook_resid_post"]
    sweep = lm.sweep_queries(planted_tl, queries, hooks)
    expected = np.array([a == 7 for _, a in queries])
    np.testing.assert_array_equal(sweep.baseline, expected)
    assert sweep.correct.shape == (3, 3, 12)
    lower = np.tril(np.ones((3, 3), bool), k=-1)
    assert (sweep.correct[lower] == expected).all()


def test_forward_order_and_residual_hooks(tiny_tl_text):
    handle = hiddenlens.load_model(tiny_tl_text)
    shuffled = ["blocks.1.hook_resid_post", "blocks.0.hook_resid_post", "blocks.1.hook_attn_out",
                "blocks.0.hook_resid_pre"]
    assert lm.forward_order(handle, shuffled) == [
        "blocks.0.hook_resid_pre", "blocks.0.hook_resid_post", "blocks.1.hook_attn_out",
        "blocks.1.hook_resid_post"]
    probe = torch.tensor([2, 5, 6, 7])
    # hook_attn_out is [batch, seq, d_model] too; q of one head is not
    hooks = lm.residual_hooks(handle, [*shuffled, "blocks.0.attn.hook_q"], probe, limit=3)
    assert hooks == ["blocks.0.hook_resid_pre", "blocks.1.hook_attn_out", "blocks.1.hook_resid_post"]


def test_no_fix_is_not_credited_to_a_pair(tmp_path, planted_tl):
    """With W_U = 0 no back-patch changes an output: the note says none fixes a failure
    instead of naming a 'best' pair at 0%."""
    raw = _raw(planted_tl.model, _text_corpus(tmp_path, n=12), ["blocks.*.hook_resid_post"])
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    m = result.metrics
    assert _m(m, "back_patching_n_failed") > 0 and _m(m, "back_patching_fixed_by_any") == 0
    html = result.report.read_text()
    assert "no back-patch fixes any of the" in html and "the most (0%)" not in html


def test_a_pair_that_tokenises_alike_is_not_patched(tmp_path, tiny_bert_dir):
    """The default pair is outside the tiny BERT's vocabulary (every word [UNK]): both texts
    have the same ids, so the note says so instead of NaN patching correlations."""
    from tests.analyze.test_matrix import BERT_DOCS, _jsonl

    source = _jsonl(tmp_path / "bert.jsonl", [BERT_DOCS[i % 5] for i in range(10)])
    raw = _raw(str(tiny_bert_dir), source, ["encoder.layer.*"],
               pair=["The cat sat on the warm mat.", "The dog sat on the warm mat."])
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    assert not any("patching_" in k or "dla_" in k for k in result.metrics)
    html = result.report.read_text()
    assert "tokenise to the same ids" in html
    # an encoder makes no next-token prediction: the LM parts say so
    assert "Per-head DLA and back-patching not run" in html and "this text encoder" in html
    assert "DiFull and missingness bias not run" in html
