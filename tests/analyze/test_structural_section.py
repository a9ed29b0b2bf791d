"""The ``[structural]`` section: structural probes for Python syntax trees on every text
model kind, the chain baseline computed on the same held-out statements, and a reason where
it does not apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hiddenlens
from hiddenlens import metric_key
from hiddenlens.analyze.config import load_config
from hiddenlens.analyze.sections import structural
from hiddenlens.probe.trees import chain_baselines, parse_statements
from tests import _models
from tests.analyze.test_matrix import _jsonl, _text_corpus

CODE = [
    "total = price * count + tax", "name = first + ' ' + last", "x = f(a, b) + g(c)",
    "result = max(values) - min(values)", "self.width = width * scale", "y = a * x + b",
    "items = sorted(pairs, key=first)", "if count > limit: count = limit",
    "path = root + sep + name", "value = table[key] + offset", "z = (a + b) * (c - d)",
    "return left + right * weight", "out = fn(x, y, z)", "size = len(data) // step",
]


def _raw(spec, source, hooks, **structural_cfg):
    return {"model": {"spec": spec, "batch_size": 8}, "data": {"source": source},
            "cache": {"hooks": hooks},
            "structural": {"n_statements": 40, "rank": 4, "steps": 30, **structural_cfg}}


def _check(result, hooks):
    assert result.failed == []
    m = result.metrics
    for h in hooks:
        for name in ("structural_uuas", "structural_distance_spearman",
                     "structural_root_accuracy", "structural_depth_spearman"):
            v = m[metric_key("probe", name, h)]
            assert np.isfinite(v) and -1 <= v <= 1, (name, h, v)
    html = result.report.read_text()
    assert "Structural probe: Python syntax trees" in html and "structural_by_layer" in html
    return m


def test_bert_encoder_on_stdlib_statements(tmp_path, tiny_bert_dir):
    docs = [("the cat sat on the mat .", "a"), ("hello world , the big red dog .", "b")] * 10
    hooks = ["embeddings", "encoder.layer.0", "encoder.layer.1"]
    raw = _raw(str(tiny_bert_dir), _jsonl(tmp_path / "bert.jsonl", docs), hooks)
    m = _check(hiddenlens.analyze(raw, tmp_path / "run", progress=False), hooks)
    # the baseline is the chain UUAS of exactly the held-out statements the probes saw
    cfg = load_config(raw).section("structural")
    ctx = type("Ctx", (), {"seed": 0, "texts": None})()
    sts, _ = structural._statements(ctx, cfg)
    handle = hiddenlens.load_model(str(tiny_bert_dir))
    limit = handle.token_limit(None)

    def survives(st):  # every Python token keeps a piece after truncation to the model's limit
        offs = handle.tokenizer(st.text, truncation=True, max_length=limit,
                                return_offsets_mapping=True)["offset_mapping"]
        return all(any(a < e and b > s_ and b > a for a, b in offs) for s_, e in st.spans)

    kept = [st for st in sts if survives(st)]
    n = int(m[metric_key("probe", "structural_n_statements")])
    assert 12 <= n == len(kept) <= len(sts)
    held = kept[int(n * structural.TRAIN_SHARE):]
    base = chain_baselines([st.parents for st in held])
    assert m[metric_key("probe", "structural_chain_uuas")] == pytest.approx(base["uuas"])
    assert m[metric_key("probe", "structural_position_root_accuracy")] == pytest.approx(
        base["root_accuracy"])


def test_gpt2_by_path_on_the_runs_own_code_texts(tmp_path, tiny_gpt2_dir):
    source = _jsonl(tmp_path / "code.jsonl", [(t, "c") for t in CODE * 2])
    hooks = ["transformer.h.0", "transformer.h.1"]
    m = _check(hiddenlens.analyze(_raw(str(tiny_gpt2_dir), source, hooks, statements="data"),
                                  tmp_path / "run", progress=False), hooks)
    assert m[metric_key("probe", "structural_n_statements")] == len(parse_statements(CODE * 2))


def test_hooked_transformer(tmp_path):
    model = _models.tiny_hooked_transformer(tokenizer_dir=tmp_path / "tok", n_ctx=32)
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    _check(hiddenlens.analyze(_raw(model, _text_corpus(tmp_path), hooks), tmp_path / "run",
                              progress=False), hooks)


def test_tensor_model_says_why_not(tmp_path):
    raw = {"model": {"spec": _models.mlp()}, "data": {"source": torch.randn(64, 8)},
           "cache": {"hooks": ["0"]}, "structural": {}}
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    assert not any("structural" in k for k in result.metrics)
    assert "reads text through the model&#x27;s tokenizer" in result.report.read_text() or \
        "reads text through the model's tokenizer" in result.report.read_text()


def test_too_few_code_texts_say_so(tmp_path, tiny_gpt2_dir):
    raw = _raw(str(tiny_gpt2_dir), _text_corpus(tmp_path), ["transformer.h.0"], statements="data")
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == [] and "usable statements were found" in result.report.read_text()


@pytest.mark.parametrize("bad", [{"statements": "github"}, {"n_statements": 5}, {"rank": 0},
                                 {"steps": -1}, {"lr": -0.1}])
def test_bad_settings_are_named(bad):
    """Each bad value's error names that very field and the value given."""
    (field, value), = bad.items()
    raw = _raw("minilm", "demo", ["x"], **bad)
    with pytest.raises(ValueError, match=rf"structural\.{field}\b") as err:
        load_config(raw)
    assert repr(value) in str(err.value) or str(value) in str(err.value)


def test_statements_lost_to_truncation_say_so(tmp_path, tiny_gpt2_dir):
    """model.seq_len = 3 truncates every statement (each has more Python tokens than three
    pieces), so none keeps all its tokens: a stated reason, not a probe fitted on nothing."""
    source = _jsonl(tmp_path / "code.jsonl", [(t, "c") for t in CODE * 2])
    raw = _raw(str(tiny_gpt2_dir), source, ["transformer.h.0"], statements="data")
    raw["model"]["seq_len"] = 3
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    assert not any("structural" in k for k in result.metrics)
    assert "survive truncation" in result.report.read_text()



def test_no_hook_with_one_vector_per_token_says_so(tmp_path):
    """Queries are [batch, seq, heads, d_head]: no hook left to probe is a stated
    reason, not a crash on an empty list of layers."""
    model = _models.tiny_hooked_transformer(tokenizer_dir=tmp_path / "tok", n_ctx=32)
    raw = _raw(model, _text_corpus(tmp_path), ["blocks.0.attn.hook_q"])
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    assert not any("structural" in k for k in result.metrics)
    html = result.report.read_text()
    assert "no cached hook has one vector per token" in html and "blocks.0.attn.hook_q" in html
