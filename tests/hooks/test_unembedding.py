"""``ModelHandle.unembedding()`` and ``final_norm()`` on every model kind: the LM's own, or None."""

import torch

from hiddenlens.hooks import load_model
from tests import _models


def test_transformerlens_unembedding_is_w_u():
    model = _models.tiny_hooked_transformer()
    u = load_model(model).unembedding()
    assert torch.equal(u, model.W_U.detach())


def test_hf_causal_lm_by_path_is_lm_head_transposed(tiny_gpt2_dir):
    handle = load_model(str(tiny_gpt2_dir))
    u = handle.unembedding()
    head = handle.model.get_output_embeddings().weight
    assert u.shape == (head.shape[1], head.shape[0])
    assert torch.equal(u, head.detach().T)


def test_models_without_an_lm_head_have_none(tiny_bert_dir):
    assert load_model(str(tiny_bert_dir)).unembedding() is None
    assert load_model(_models.mlp()).unembedding() is None
    assert load_model(_models.bn_cnn()).unembedding() is None


def test_final_norm_is_the_norm_before_the_unembedding(tmp_path, tiny_gpt2_dir):
    tl = _models.tiny_hooked_transformer()
    assert load_model(tl).final_norm() is tl.ln_final
    gpt2 = load_model(str(tiny_gpt2_dir))
    assert gpt2.final_norm() is gpt2.model.transformer.ln_f
    llama = load_model(str(_models.tiny_llama_dir(tmp_path / "llama")))
    assert llama.final_norm() is llama.model.model.norm
    assert load_model(_models.mlp()).final_norm() is None
