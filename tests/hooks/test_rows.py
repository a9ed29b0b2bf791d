import logging

import numpy as np
import pytest
import torch

from hiddenlens.hooks import iter_row_batches, load_model


def _handle(tiny_bert):
    model, tok = tiny_bert
    handle = load_model(model)
    handle.tokenizer = tok
    return handle


def test_text_rows_drop_padding_and_specials(tiny_bert):
    handle = _handle(tiny_bert)
    texts = ["the cat sat", "a dog ran fast on the mat .", "hello"]
    batches = list(iter_row_batches(handle, texts, "encoder.layer.1", batch_size=2))
    n_tokens = sum(len(handle.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    rows = torch.cat([b.acts["encoder.layer.1"] for b in batches])
    meta = {k: np.concatenate([b.meta[k] for b in batches]) for k in batches[0].meta}
    assert rows.shape == (n_tokens, 16)
    assert list(meta["sample_idx"][:3]) == [0, 0, 0] and list(meta["position"][:3]) == [1, 2, 3]
    assert batches[-1].sample_stop == 3
    # a row equals the model's own hidden state at that (sample, position)
    enc = handle.tokenizer(texts[1:2], return_tensors="pt")
    full = handle.model(**enc).last_hidden_state[0]
    torch.testing.assert_close(rows[3], full[1], atol=1e-5, rtol=1e-5)


def test_labels_broadcast_and_resume_offset(tiny_bert):
    handle = _handle(tiny_bert)
    texts = ["the cat", "a dog", "red mat"]
    batches = list(
        iter_row_batches(
            handle,
            texts,
            "encoder.layer.0",
            batch_size=1,
            labels={"y": np.array([7, 8, 9])},
            start_sample=1,
        )
    )
    assert batches[0].meta["sample_idx"][0] == 1
    assert set(np.concatenate([b.meta["y"] for b in batches])) == {8, 9}
    with pytest.raises(ValueError, match="has 2 values but the data has 3"):
        next(iter_row_batches(handle, texts, "encoder.layer.0", labels=[1, 2]))


def test_long_sequences_truncated_with_one_warning(tiny_bert, caplog):
    handle = _handle(tiny_bert)
    long = " ".join(["the cat sat on the mat"] * 10)
    with caplog.at_level(logging.WARNING):
        batches = list(iter_row_batches(handle, [long, long], "encoder.layer.0", batch_size=1))
    assert sum("truncated" in r.message for r in caplog.records) == 1
    assert all(len(b) <= 22 for b in batches)  # 24 positions minus [CLS] and [SEP]


def test_tensor_and_dataloader_rows(mlp, cnn):
    x = torch.randn(10, 8)
    rows = list(iter_row_batches(mlp, x, ["1", "4"], batch_size=4))
    assert [len(b) for b in rows] == [4, 4, 2]
    torch.testing.assert_close(torch.cat([b.acts["4"] for b in rows]), mlp(x).detach())
    ds = torch.utils.data.TensorDataset(torch.randn(6, 1, 8, 8), torch.arange(6))
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    got = list(iter_row_batches(cnn, loader, "2", start_sample=2))
    assert got[0].acts["2"].shape == (2, 64) and list(got[0].meta["label"]) == [2, 3]


def test_grads_and_bad_input(mlp):
    x = torch.randn(6, 8)
    (b,) = iter_row_batches(
        mlp, x, "2", batch_size=6, grads=True, loss_fn=lambda out, batch: out.sum()
    )
    assert b.acts["2#grad"].shape == (6, 16)
    with pytest.raises(ValueError, match="empty"):
        next(iter_row_batches(mlp, torch.empty(0, 8), "2"))
    with pytest.raises(ValueError, match="loss_fn"):
        next(iter_row_batches(mlp, x, "2", grads=True))
    with pytest.raises(TypeError, match="no tokenizer"):
        next(iter_row_batches(mlp, ["text"], "2"))
