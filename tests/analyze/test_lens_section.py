"""The ``[lens]`` section: logit vs tuned lens on a causal LM, a reason elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

import hiddenlens
from hiddenlens import metric_key
from tests.analyze.test_matrix import _jsonl, _text_corpus


def _raw(spec, source, hooks, **lens):
    return {"model": {"spec": spec, "batch_size": 8}, "data": {"source": source},
            "cache": {"hooks": hooks}, "lens": {"steps": 60, "batch_size": 128, **lens}}


def test_gpt2_by_path_tuned_lens_is_closer_than_the_logit_lens(tmp_path, tiny_gpt2_dir):
    raw = _raw(str(tiny_gpt2_dir), _text_corpus(tmp_path, n=60),
               ["transformer.drop", "transformer.h.*"])
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    m = result.metrics
    kl = {h: (m[metric_key("attribution", "logit_lens_kl", h)],
              m[metric_key("attribution", "tuned_lens_kl", h)])
          for h in ("transformer.drop", "transformer.h.0", "transformer.h.1")}
    assert all(t < lo for lo, t in (kl["transformer.drop"], kl["transformer.h.0"]))
    assert kl["transformer.h.1"] == (0.0, 0.0)  # the final residual is the model's output
    assert m[metric_key("attribution", "tuned_lens_better_share")] == 1.0
    assert m[metric_key("attribution", "lens_final_logprob_gap")] < 1e-4
    ppl = m[metric_key("attribution", "logit_lens_ppl", "transformer.h.1")]
    assert np.isclose(ppl, m[metric_key("attribution", "lens_model_ppl")])
    html = result.report.read_text()
    assert "Tuned lens vs logit lens" in html and "lens_kl" in html
    from hiddenlens.report.glossary import lookup

    words = [k for k in m if lookup(*k.split("/")[:2]) is None]
    assert words == []  # every lens metric is said in words in the report


def test_encoder_says_why_no_lens(tmp_path, tiny_bert_dir):
    docs = [("the cat sat on the mat .", "a"), ("hello world , the big red dog .", "b")] * 10
    raw = _raw(str(tiny_bert_dir), _jsonl(tmp_path / "bert.jsonl", docs), ["encoder.layer.*"])
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    assert not any("lens" in k for k in result.metrics)
    assert "has no unembedding" in result.report.read_text()


def test_hooked_transformer_lens_on_pre_and_post_residuals(tmp_path):
    """A TransformerLens model (the lens was tested on a HF causal LM only), hooks given
    post-first: the store keeps forward order, so the final hook is blocks.1.hook_resid_post
    (its decoding is the model's output: gap 0, KL 0); blocks.0 post and blocks.1 pre are
    the same tensor, so both lenses score them alike."""
    from tests import _models

    model = _models.tiny_hooked_transformer(tokenizer_dir=tmp_path / "tok", n_ctx=16)
    raw = _raw(model, _text_corpus(tmp_path, n=60),
               ["blocks.*.hook_resid_post", "blocks.*.hook_resid_pre"], steps=10)
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    m = result.metrics
    assert m[metric_key("attribution", "lens_final_logprob_gap")] < 1e-4
    assert m[metric_key("attribution", "logit_lens_kl", "blocks.1.hook_resid_post")] == 0.0
    for lens in ("logit_lens_kl", "tuned_lens_kl"):
        assert m[metric_key("attribution", lens, "blocks.0.hook_resid_post")] == pytest.approx(
            m[metric_key("attribution", lens, "blocks.1.hook_resid_pre")], rel=1e-5)


def test_causal_lm_without_a_known_final_norm_says_so(tmp_path, tiny_gpt2_dir, monkeypatch):
    """An architecture whose final norm has a name hiddenlens does not know: a stated
    reason, not the section failing in lens_decoder."""
    import hiddenlens.hooks.model as model_mod

    monkeypatch.setattr(model_mod, "_FINAL_NORMS", ())
    raw = _raw(str(tiny_gpt2_dir), _text_corpus(tmp_path), ["transformer.h.*"])
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    assert not any("lens" in k for k in result.metrics)
    assert "final norm, and this model" in result.report.read_text().replace("&#x27;", "'")


def test_one_document_says_so(tmp_path, tiny_gpt2_dir):
    """One document leaves no held-out documents: a stated reason, not torch.randint on an
    empty training set."""
    raw = _raw(str(tiny_gpt2_dir), _text_corpus(tmp_path, n=1), ["transformer.h.*"], steps=5)
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    assert not any("lens" in k for k in result.metrics)
    assert "this run has 1 document" in result.report.read_text()
