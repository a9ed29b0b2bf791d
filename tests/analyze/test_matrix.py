"""``analyze`` end to end on every model kind (tiny random models, offline): sae + probe +
collapse (+ attribution), and the report opened in headless Chromium without console errors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import hiddenlens
from hiddenlens import metric_key
from tests import _models
from tests.report.browser import open_page

TOPICS = {0: "animals", 1: "animals", 2: "greeting", 3: "animals", 4: "code", 5: "code"}
BERT_DOCS = [
    ("the cat sat on the mat .", "animals"),
    ("a dog ran fast and the cat sat .", "animals"),
    ("hello world , the big red dog .", "greeting"),
    ("small cats ran on a big mat .", "animals"),
    ("hello world , 1 2 3 .", "greeting"),
]


def metric(metrics: dict, analyzer: str, name: str, where: str | None = None) -> float:
    """A metric by its key in the one grammar (``sae/fvu/h``); old spellings do not count."""
    key = metric_key(analyzer, name, where)
    if key in metrics:
        return metrics[key]
    raise KeyError(f"{key} not in {sorted(metrics)[:40]}")


def _jsonl(path, docs):
    path.write_text("".join(json.dumps({"text": t, "topic": y}) + "\n" for t, y in docs))
    return str(path)


def _text_corpus(tmp_path, n=48):
    docs = [(s, TOPICS[i]) for i, s in enumerate(_models.SENTENCES)]
    return _jsonl(tmp_path / "corpus.jsonl", [docs[i % len(docs)] for i in range(n)])


def _config(spec, source, hooks, sae_hook, *, attribution=True, **extra):
    raw = {
        "model": {"spec": spec, "batch_size": 8},
        "data": {"source": source, "labels": ["topic"]},
        "cache": {"hooks": hooks},
        "sae": {"hooks": [sae_hook], "k": 4, "expansion": 2, "total_tokens": 4096,
                "batch_size": 128, "eval_rows": 500, "eval_docs": 6, "top_latents": 2},
        "probe": {"labels": ["topic"], "rows": 400, "mdl_rows": 200, "cka_rows": 200, "cv": 2,
                  "n_boot": 10, "max_iter": 50},
        "collapse": {"labels": ["topic"], "ufm_steps": 20},
    }
    if attribution:
        raw["attribution"] = {"examples": 2, "n_steps": 4}
    for table, values in extra.items():
        raw.setdefault(table, {}).update(values)
    return raw


def _run(raw, out):
    result = hiddenlens.analyze(raw, out, progress=False)
    assert result.failed == [], (out / "report.html").read_text()[-3000:]
    dom, console = open_page(result.report)
    assert console == [], console
    saved = json.loads((out / "metrics.json").read_text())["metrics"]
    assert saved.keys() == result.metrics.keys()
    return result, dom


def _common(result, sae_hook, hooks):
    m = result.metrics
    assert 0 <= metric(m, "sae", "fvu", sae_hook) < 1.5
    assert metric(m, "sae", "l0", sae_hook) == pytest.approx(4, abs=1e-6)
    assert any(k.startswith("probe/") and k.endswith(tuple(hooks)) for k in m)
    for h in hooks:
        assert np.isfinite(metric(m, "collapse", "nc1", h))


def test_mlp_on_tensors(tmp_path):
    """A planted label (sign of x0) is linearly readable at the first layer; the spliced
    evaluation of a module reports the output error recovered."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(240, 8, generator=g)
    y = (x[:, 0] > 0).long().numpy()
    raw = _config(_models.mlp(), {"x": x, "topic": y}, ["0", "2"], "2", lens={})
    result, dom = _run(raw, tmp_path / "run")
    assert "has no unembedding" in dom  # the lens section says why it does not apply
    m = result.metrics
    _common(result, "2", ["0", "2"])
    acc = metric(m, "probe", "probe_topic", "0")  # held-out accuracy at the first layer
    assert acc > 0.9
    assert np.isfinite(metric(m, "sae", "downstream_score", "2"))
    assert "attribution/grad_x_act_total/0" in m
    assert "No control task" in dom


def test_bert_encoder_loaded_by_path(tmp_path, tiny_bert_dir):
    """An encoder gets the embedding-cosine score and the report says why there is no CE."""
    source = _jsonl(tmp_path / "bert.jsonl", [BERT_DOCS[i % 5] for i in range(40)])
    hooks = ["encoder.layer.0", "encoder.layer.1"]
    raw = _config(str(tiny_bert_dir), source, ["encoder.layer.*"], "encoder.layer.1",
                  attribution={"pair": ["the cat sat .", "the dog sat ."], "reference": "the cat"})
    result, dom = _run(raw, tmp_path / "run")
    _common(result, "encoder.layer.1", hooks)
    m = result.metrics
    assert -1 <= metric(m, "sae", "embed_cos_spliced", "encoder.layer.1") <= 1
    assert not any("ce_loss_score" in k for k in m)
    assert "no LM head, so no CE-loss score" in dom
    # string labels round-trip: the store keeps codes, the report shows the names
    assert "greeting" in dom and "animals" in dom
    assert np.isfinite(m["attribution/ig_completeness_max_abs_delta"])


def _tl_text(tmp_path):
    return _models.tiny_hooked_transformer(tokenizer_dir=tmp_path / "tok", n_ctx=16)


def test_hooked_transformer_on_text_matches_sae_lens(tmp_path):
    """CE clean / spliced / zero, CE-loss score and KL equal sae_lens's get_recons_loss on
    the same SAE and tokens, with its convention for special tokens (unspliced, uncounted);
    all documents have the same length, so nothing is padded."""
    from sae_lens import SAE
    from sae_lens.evals import get_recons_loss
    from sae_lens.training.activation_scaler import ActivationScaler

    model = _tl_text(tmp_path)
    source = _text_corpus(tmp_path)
    hook = "blocks.1.hook_resid_post"
    raw = _config(model, source, ["blocks.*.hook_resid_post"], hook,
                  sae={"eval_docs": 4}, attribution={"pair": ["the cat sat .", "the dog sat ."]})
    raw["data"]["source"] = _jsonl(tmp_path / "same_len.jsonl",
                                   [(_models.SENTENCES[0], "animals"), (_models.SENTENCES[5], "code")] * 24)
    result, _ = _run(raw, tmp_path / "run")
    m = result.metrics
    _common(result, hook, ["blocks.0.hook_resid_post", hook])
    texts = [_models.SENTENCES[0], _models.SENTENCES[5]] * 2
    enc = model.tokenizer(texts, return_tensors="pt")  # what the pipeline evaluated on
    assert bool(enc["attention_mask"].all())  # equal lengths: no padding
    tokens = enc["input_ids"]
    sae = SAE.load_from_disk(str(tmp_path / "run" / "sae" / hook))
    tok = model.tokenizer
    ignore = [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id]  # the store dropped these
    ref = get_recons_loss(sae, model, ActivationScaler(), tokens, compute_kl=True,
                          compute_ce_loss=True, hook_name=hook, ignore_tokens=ignore)
    keep = ~torch.isin(tokens, torch.tensor(ignore))  # as get_downstream_reconstruction_metrics
    ce = {k: float(ref[f"ce_loss_{k}"][keep[:, :-1]].mean())
          for k in ("without_sae", "with_sae", "with_ablation")}
    assert metric(m, "sae", "ce_clean", hook) == pytest.approx(ce["without_sae"], rel=1e-4)
    assert metric(m, "sae", "ce_spliced", hook) == pytest.approx(ce["with_sae"], rel=1e-4)
    assert metric(m, "sae", "ce_zero", hook) == pytest.approx(ce["with_ablation"], rel=1e-4)
    score = (ce["with_ablation"] - ce["with_sae"]) / (ce["with_ablation"] - ce["without_sae"])
    assert metric(m, "sae", "ce_loss_score", hook) == pytest.approx(score, rel=1e-3, abs=1e-5)
    kl = float(ref["kl_div_with_sae"][keep].mean())
    assert metric(m, "sae", "kl_spliced", hook) == pytest.approx(kl, rel=1e-3, abs=1e-6)


def test_gpt2_causal_lm_loaded_by_path(tmp_path, tiny_gpt2_dir):
    """A *ForCausalLM directory keeps its LM head: CE clean equals the next-token loss
    computed directly from the model's logits (special tokens left out, as SAELens does)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hook = "transformer.h.1"
    raw = _config(str(tiny_gpt2_dir), _text_corpus(tmp_path), ["transformer.h.*"], hook,
                  sae={"eval_docs": 2}, attribution={"pair": ["the cat sat .", "the dog sat ."]})
    result, _ = _run(raw, tmp_path / "run")
    m = result.metrics
    _common(result, hook, ["transformer.h.0", hook])
    ref = AutoModelForCausalLM.from_pretrained(str(tiny_gpt2_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_gpt2_dir))
    ids = tok(_models.SENTENCES[:2], return_tensors="pt", padding=True)
    special = torch.isin(ids["input_ids"], torch.tensor(tok.all_special_ids))
    with torch.no_grad():
        logits = ref(**ids).logits
    # next-token CE where the current token is real and not special (SAELens's convention)
    keep = ~special[:, :-1] & ids["attention_mask"][:, 1:].bool()
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), ids["input_ids"][:, 1:], reduction="none")
    loss = nll[keep].mean()
    assert metric(m, "sae", "ce_clean", hook) == pytest.approx(float(loss), rel=1e-4)
    z, s, c = (metric(m, "sae", f"ce_{k}", hook) for k in ("zero", "spliced", "clean"))
    assert metric(m, "sae", "ce_loss_score", hook) == pytest.approx((z - s) / (z - c), rel=1e-6)
    assert metric(m, "sae", "kl_spliced", hook) >= 0
    # the dashboard shows each latent's direct logit effect (W_dec @ W_U) for an LM
    import re

    page = (tmp_path / "run" / "sae_dashboard_transformer.h.1.html").read_text()
    assert re.search(r'"effects_pos":\s*\[\[', page)


def test_hooked_transformer_on_token_ids(tmp_path):
    model = _models.tiny_hooked_transformer(d_vocab=20, n_ctx=12)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (40, 10), generator=g)
    topic = (ids[:, 0] % 2).numpy()
    hook = "blocks.1.hook_resid_post"
    raw = _config(model, {"x": ids, "topic": topic}, ["blocks.*.hook_resid_post"], hook,
                  attribution=True,
                  lens={"steps": 40, "batch_size": 64, "rows": 300, "eval_rows": 100})
    result, _ = _run(raw, tmp_path / "run")
    store = hiddenlens.ActivationStore.open(tmp_path / "run" / "store")
    assert len(store) == 40 * 10 and store.d(hook) == 16  # one row per token
    assert np.isfinite(metric(result.metrics, "sae", "ce_loss_score", hook))
    # the tuned lens on a TransformerLens model: the last residual decodes to the output
    m, first = result.metrics, "blocks.0.hook_resid_post"
    assert metric(m, "attribution", "lens_final_logprob_gap") < 1e-4
    assert metric(m, "attribution", "tuned_lens_kl", first) < metric(
        m, "attribution", "logit_lens_kl", first)


def test_bn_cnn_per_position_rows(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=g)
    topic = (x.mean((1, 2, 3)) > 0).long().numpy()
    raw = _config(_models.bn_cnn(), {"x": x, "topic": topic}, ["1", "2"], "2",
                  cache={"rows": "position"})
    raw["attribution"]["examples"] = 8
    result, dom = _run(raw, tmp_path / "run")
    # DiFull on grids of the examples: backprop maps stay inside the head's cell exactly
    for hook in ("input", "1", "2"):
        assert metric(result.metrics, "attribution", "difull", f"{hook}/grad") == pytest.approx(1.0)
    assert 0 <= metric(result.metrics, "attribution", "difull", "2/gradcam") <= 1
    store = hiddenlens.ActivationStore.open(tmp_path / "run" / "store")
    assert len(store) == 64 * 8 * 8 and store.d("2") == 4  # B*H*W rows of C channels
    assert "Spliced evaluation not applicable" in dom
