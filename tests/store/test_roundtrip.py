"""Round trips: what is stored equals what the model computed, bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hiddenlens.hooks.rows import iter_row_batches
from hiddenlens.store import ActivationStore, cache_activations


def test_tensor_round_trip_bit_exact(tmp_path, mlp_model, tensor_data):
    labels = np.arange(300) % 3
    store = cache_activations(
        mlp_model,
        tensor_data,
        ["0", "2"],
        tmp_path / "s",
        batch_size=32,
        labels=labels,
        shard_size_mb=0.005,
    )
    assert store.n_shards > 3  # several shards, so shard boundaries are exercised
    with torch.no_grad():
        h0 = mlp_model[0](tensor_data)
        h2 = mlp_model(tensor_data)
    assert np.array_equal(store.rows("0"), h0.numpy())
    assert np.array_equal(store.rows("2"), h2.numpy())
    assert np.array_equal(store.rows("0", 45, 190), h0.numpy()[45:190])  # spans shards
    lo, hi = store.shard_rows(1)
    view = store.rows("0", lo + 1, hi - 1)  # inside one shard: a read-only memory map
    assert not view.flags.owndata and not view.flags.writeable
    assert np.array_equal(store.meta["sample_idx"], np.arange(300))
    assert np.array_equal(store.meta["label"], labels)
    assert len(store) == 300 and store.d("0") == 16 and store.d("2") == 4
    reopened = ActivationStore.open(tmp_path / "s")
    assert reopened.hook_points == ["0", "2"]
    assert reopened.manifest["n_rows"] == 300


def test_text_round_trip_matches_row_iterator(tmp_path, text_handle, texts):
    store = cache_activations(
        text_handle, texts, "encoder.layer.*", tmp_path / "s", batch_size=8, shard_size_mb=0.002
    )
    batches = list(iter_row_batches(text_handle, texts, store.hook_points, batch_size=8))
    for hook in store.hook_points:
        expected = torch.cat([b.acts[hook] for b in batches]).numpy()
        assert np.array_equal(store.rows(hook), expected)
    for key in ("sample_idx", "position", "token_id"):
        assert np.array_equal(store.meta[key], np.concatenate([b.meta[key] for b in batches]))
    # one row per non-special, non-padding token
    n_tokens = sum(
        len(text_handle.tokenizer(t, add_special_tokens=False)["input_ids"][:22]) for t in texts
    )
    assert len(store) == n_tokens
    tok = store.manifest["run"]["settings"]["tokenizer"]
    assert tok["model_max_length"] == 24


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_low_precision_round_trip(tmp_path, mlp_model, tensor_data, dtype):
    store = cache_activations(mlp_model, tensor_data, ["0"], tmp_path / dtype, dtype=dtype)
    with torch.no_grad():
        expected = mlp_model[0](tensor_data).to(getattr(torch, dtype)).float().numpy()
    assert store.dtype("0") == dtype
    assert np.array_equal(np.asarray(store.rows("0"), dtype=np.float32), expected)
    batch = next(iter(store.batches("0", 300, shuffle=False)))
    assert batch.dtype == torch.float32 and np.array_equal(batch.numpy(), expected)
    st = store.stats("0")
    assert np.allclose(st["mean"], expected.astype(np.float64).mean(0), rtol=1e-12, atol=1e-12)


def test_stats_equal_numpy(tmp_path, mlp_model, tensor_data):
    shifted = tensor_data * 3 + 5  # a large mean makes a naive variance visibly wrong
    store = cache_activations(
        mlp_model, shifted, ["0", "1"], tmp_path / "s", batch_size=17, shard_size_mb=0.004
    )
    for hook in ("0", "1"):
        x = store.rows(hook).astype(np.float64)
        st = store.stats(hook)
        assert st["count"] == 300
        np.testing.assert_allclose(st["mean"], x.mean(0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(st["var"], x.var(0), rtol=1e-9, atol=1e-12)
        assert st["mean_norm"] == pytest.approx(np.linalg.norm(x, axis=1).mean(), rel=1e-12)


def test_grads_equal_autograd(tmp_path, mlp_model, tensor_data):
    def loss_fn(out, batch):
        return (out**2).sum()

    store = cache_activations(
        mlp_model,
        tensor_data,
        ["0", "1"],
        tmp_path / "s",
        batch_size=50,
        grads=True,
        loss_fn=loss_fn,
    )
    assert store.hook_points == ["0", "1", "0#grad", "1#grad"]
    h0 = mlp_model[0](tensor_data).detach().requires_grad_(True)
    h1 = mlp_model[1](h0)
    h1.retain_grad()
    (mlp_model[2](h1) ** 2).sum().backward()
    np.testing.assert_allclose(store.rows("0#grad"), h0.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(store.rows("1#grad"), h1.grad.numpy(), rtol=1e-5, atol=1e-6)
    assert np.array_equal(store.rows("1"), h1.detach().numpy())


def test_max_rows_exact(tmp_path, text_handle, texts):
    full = cache_activations(
        text_handle, texts, ["encoder.layer.1"], tmp_path / "full", batch_size=4
    )
    part = cache_activations(
        text_handle, texts, ["encoder.layer.1"], tmp_path / "part", batch_size=4, max_rows=37
    )
    assert len(part) == 37
    assert np.array_equal(part.rows("encoder.layer.1"), full.rows("encoder.layer.1", 0, 37))
    assert np.array_equal(part.meta["token_id"], full.meta["token_id"][:37])


def test_readable_without_hiddenlens(tmp_path, mlp_model, tensor_data):
    """The documented format: manifest.json, the shard table shards.npy and plain .npy
    files, read with json + numpy alone; sha256 per file and of the table."""
    import hashlib

    store = cache_activations(mlp_model, tensor_data, ["2"], tmp_path / "s", batch_size=50,
                              shard_size_mb=0.001)
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert manifest["format"] == "hiddenlens.activation_store" and manifest["complete"]
    assert manifest["schema_version"] == 2 and "shards" not in manifest
    entry = manifest["shard_table"]
    raw = (tmp_path / "s" / entry["file"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == entry["sha256"] and len(raw) == entry["bytes"]
    table = np.load(tmp_path / "s" / entry["file"], allow_pickle=False)
    assert len(table) == entry["count"] == store.n_shards >= 3
    hook = manifest["hooks"]["2"]
    j = entry["files"].index(hook["file"])
    parts = []
    for i in range(len(table)):
        assert table["rank"][i] == -1  # one process: shard_NNNNN at the top level
        path = tmp_path / "s" / f"shard_{table['index'][i]:05d}" / hook["file"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == table["sha256"][i, j].tobytes().hex()
        parts.append(np.load(path, allow_pickle=False))
    assert np.array_equal(np.concatenate(parts), store.rows("2"))
    assert table["rows"].sum() == manifest["n_rows"] == 300
    assert list(table["row_start"]) == list(np.cumsum(table["rows"]) - table["rows"])
    assert store.manifest["shards"][1]["files"][hook["file"]]["sha256"] == table["sha256"][1, j].tobytes().hex()


def test_to_hf_dataset(tmp_path, mlp_model, tensor_data):
    store = cache_activations(mlp_model, tensor_data, ["0"], tmp_path / "s", shard_size_mb=0.004)
    ds = store.to_hf_dataset()
    assert len(ds) == 300 and set(ds.column_names) == {"0", "sample_idx"}
    ds = ds.with_format("numpy")
    assert np.array_equal(ds["0"][:], store.rows("0"))
    assert np.array_equal(ds["sample_idx"][:], store.meta["sample_idx"])
