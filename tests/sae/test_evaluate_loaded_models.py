"""``sae.evaluate(..., model=handle)`` on models loaded by path picks the right score.

A causal LM loaded from a directory keeps its LM head, so the spliced evaluation reports
the CE-loss score and KL (it used to load with ``AutoModel`` and silently report the
sentence-embedding cosine); an encoder reports the embedding cosine.
"""

import pytest
import torch

from hiddenlens.hooks import load_model
from hiddenlens.sae import SAEConfig, build_sae, evaluate
from hiddenlens.store import cache_activations
from tests import _models


def _exact_sae(d: int):
    """relu(x) - relu(-x) = x: a ReLU SAE that reconstructs any input exactly."""
    sae = build_sae(SAEConfig(d_in=d, d_sae=2 * d, architecture="relu", apply_b_dec_to_input=False))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae.eval()


def test_causal_lm_by_path_gets_ce_loss_score(tiny_gpt2_dir, tmp_path):
    handle = load_model(str(tiny_gpt2_dir))
    texts = _models.SENTENCES
    store = cache_activations(handle, texts, "transformer.h.0", tmp_path / "s")
    m = evaluate(_exact_sae(16), store, "transformer.h.0", model=handle, data=texts)
    hook = "transformer.h.0"
    assert m[f"sae/ce_loss_score/{hook}"] == pytest.approx(1.0, abs=1e-6)
    assert m[f"sae/kl_spliced/{hook}"] == pytest.approx(0.0, abs=1e-9)
    assert m[f"sae/kl_zero/{hook}"] > 1e-6  # zero-ablation changes the next-token logits
    assert m[f"sae/ce_zero/{hook}"] != pytest.approx(m[f"sae/ce_clean/{hook}"], abs=1e-6)
    assert not [k for k in m if "embed_cos" in k]


def test_encoder_by_path_gets_embedding_cosine(tiny_bert_dir, tmp_path):
    handle = load_model(str(tiny_bert_dir))
    texts = ["the cat sat on the mat .", "a dog ran fast", "hello world"]
    store = cache_activations(handle, texts, "encoder.layer.0", tmp_path / "s")
    m = evaluate(_exact_sae(16), store, "encoder.layer.0", model=handle, data=texts)
    assert m["sae/embed_cos_spliced/encoder.layer.0"] == pytest.approx(1.0, abs=1e-5)
    assert not [k for k in m if "ce_loss" in k]


def test_hooked_transformer_on_token_ids_gets_ce_loss_score(tiny_tl, tmp_path):
    ids = torch.randint(0, 20, (6, 8), generator=torch.Generator().manual_seed(1))
    hook = "blocks.0.hook_resid_post"
    store = cache_activations(tiny_tl, ids, hook, tmp_path / "s")
    m = evaluate(_exact_sae(16), store, hook, model=tiny_tl, data=ids)
    assert m[f"sae/ce_loss_score/{hook}"] == pytest.approx(1.0, abs=1e-6)
    assert m[f"sae/kl_zero/{hook}"] > 1e-6


def test_module_without_lm_head_says_why(tmp_path):
    model = _models.mlp()
    x = torch.randn(10, 8)
    store = cache_activations(model, x, "2", tmp_path / "s")
    with pytest.raises(ValueError, match="need a model with an LM head .* is a 'module' model"):
        evaluate(_exact_sae(16), store, "2", model=model, data=x)
