import pytest
import torch

from hiddenlens.hooks import load_model


def test_minilm_loads_offline_and_embeds_like_sentence_transformers():
    handle = load_model("minilm")
    assert handle.kind == "hf" and handle.max_length == 512
    assert "encoder.layer.5" in handle.hook_points
    emb = handle.embed(["The cat sat on the mat.", "Python is a programming language."])
    assert emb.shape == (2, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    from sentence_transformers import SentenceTransformer

    from hiddenlens.hooks.model import minilm_path

    ref = SentenceTransformer(str(minilm_path()), device="cpu").encode(
        ["The cat sat on the mat.", "Python is a programming language."], convert_to_tensor=True
    )
    torch.testing.assert_close(emb, ref, atol=1e-5, rtol=1e-4)


def test_missing_hf_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a local directory"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(TypeError, match="accepts"):
        load_model(42)


def test_module_and_transformer_lens(mlp, tiny_tl):
    assert load_model(mlp).kind == "module"
    handle = load_model(tiny_tl)
    assert handle.kind == "transformer_lens" and handle.max_length == 12
