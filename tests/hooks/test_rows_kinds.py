"""Rows per token for token ids (TransformerLens, HF GPT-2) and per position for conv maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiddenlens.hooks import load_model
from hiddenlens.store import cache_activations
from tests import _models


def _padded_ids(vocab: int, n: int = 5, seq: int = 8, pad: int = 0):
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, vocab, (n, seq), generator=g)
    lengths = torch.tensor([seq, 3, 6, 1, 5])[:n]
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, pad), mask


def test_token_ids_on_a_hooked_transformer_give_one_row_per_token(tiny_tl, tmp_path):
    ids, mask = _padded_ids(20)
    hooks = "blocks.*.hook_resid_post"
    store = cache_activations(
        tiny_tl, {"input_ids": ids, "attention_mask": mask}, hooks, tmp_path / "s", batch_size=2
    )
    assert len(store) == int(mask.sum()) and store.d("blocks.0.hook_resid_post") == 16
    meta = store.meta
    _, cache = tiny_tl.run_with_cache(ids, attention_mask=mask)
    for hook in store.hook_points:
        want = cache[hook][meta["sample_idx"], meta["position"]].numpy()
        np.testing.assert_allclose(store.rows(hook), want, atol=1e-5, rtol=1e-5)
    assert np.array_equal(meta["token_id"], ids[mask.bool()].numpy())
    assert store.manifest["run"]["settings"]["rows"] == "token"
    assert store.manifest["hooks"]["blocks.0.hook_resid_post"]["shape"] == [16]


def test_pad_id_of_the_tokenizer_excludes_padding(tiny_tl_text, tmp_path):
    tok = load_model(tiny_tl_text).tokenizer
    ids, mask = _padded_ids(len(tok), pad=tok.pad_token_id)
    store = cache_activations(tiny_tl_text, ids, "blocks.1.hook_resid_post", tmp_path / "s")
    assert len(store) == int(mask.sum())
    assert (store.meta["token_id"] != tok.pad_token_id).all()


def test_token_ids_on_an_hf_gpt2_give_one_row_per_token(tmp_path):
    model = _models.tiny_gpt2()
    ids, mask = _padded_ids(64)
    store = cache_activations(
        model,
        {"input_ids": ids, "attention_mask": mask},
        ["transformer.h.0", "transformer.h.1"],
        tmp_path / "s",
        batch_size=3,
    )
    assert len(store) == int(mask.sum()) and store.d("transformer.h.0") == 16
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    meta = store.meta
    want = hidden[1][meta["sample_idx"], meta["position"]].numpy()  # output of block 0
    np.testing.assert_allclose(store.rows("transformer.h.0"), want, atol=1e-5, rtol=1e-5)
    # a padded sequence gives the rows of the same sequence run alone, unpadded
    alone = model(input_ids=ids[1:2, :3], output_hidden_states=True).hidden_states[1][0]
    rows_of_1 = store.rows("transformer.h.0")[meta["sample_idx"] == 1]
    np.testing.assert_allclose(rows_of_1, alone.detach().numpy(), atol=1e-5, rtol=1e-5)


def test_conv_maps_per_position(bn_cnn, tmp_path):
    x = torch.randn(6, 1, 8, 8)
    store = cache_activations(bn_cnn, x, ["2"], tmp_path / "s", batch_size=4, rows="position")
    with torch.no_grad():
        act = bn_cnn[:3](x)  # [6, 4, 8, 8]
    assert len(store) == 6 * 64 and store.d("2") == 4
    assert store.manifest["hooks"]["2"]["shape"] == [4, 8, 8]
    np.testing.assert_allclose(
        store.rows("2"), act.permute(0, 2, 3, 1).reshape(-1, 4).numpy(), atol=1e-6
    )
    meta = store.meta
    h, w = np.unravel_index(meta["position"], (8, 8))
    np.testing.assert_allclose(store.rows("2"), act[meta["sample_idx"], :, h, w].numpy(), atol=1e-6)
    default = cache_activations(bn_cnn, x, ["2"], tmp_path / "e", batch_size=4)
    assert len(default) == 6 and default.d("2") == 4 * 64  # rows="example" stays the default
    assert default.manifest["hooks"]["2"]["shape"] == [4, 8, 8]


def test_row_modes_that_do_not_fit_are_refused(bn_cnn, tiny_bert, tmp_path):
    x = torch.randn(4, 1, 8, 8)
    with pytest.raises(ValueError, match="same number of positions"):
        cache_activations(bn_cnn, x, ["2", "6"], tmp_path / "a", rows="position")
    with pytest.raises(ValueError, match=r"channels-first map.*'8'"):
        cache_activations(bn_cnn, x, ["8"], tmp_path / "b", rows="position")
    with pytest.raises(ValueError, match="rows='token' needs text or token ids"):
        cache_activations(bn_cnn, x, ["2"], tmp_path / "c", rows="token")
    with pytest.raises(ValueError, match="rows='position' is for channels-first"):
        cache_activations(
            bn_cnn, torch.zeros(2, 3, dtype=torch.long), ["0"], tmp_path / "t", rows="position"
        )
    with pytest.raises(ValueError, match="rows must be one of"):
        cache_activations(bn_cnn, x, ["2"], tmp_path / "d", rows="pixel")
    model, tok = tiny_bert
    handle = load_model(model)
    handle.tokenizer = tok
    with pytest.raises(ValueError, match="does not apply to text"):
        cache_activations(handle, ["the cat"], "encoder.layer.0", tmp_path / "e", rows="example")
    with pytest.raises(TypeError, match="has no tokenizer"):
        cache_activations(model, ["the cat"], "encoder.layer.0", tmp_path / "f")
    assert not (tmp_path / "f").exists()  # refused before any directory was made
