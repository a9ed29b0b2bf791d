"""Caching every model kind through ``cache_activations`` and reading the rows back.

The weight fingerprint used to crash on 0-dim tensors (TransformerLens's ``IGNORE``
buffer, BatchNorm's ``num_batches_tracked``, scalar parameters).
"""

import numpy as np
import torch

from hiddenlens.hooks import load_model
from hiddenlens.hooks.rows import handle_fingerprint
from hiddenlens.store import ActivationStore, cache_activations
from tests import _models


def test_hooked_transformer_caches_text_and_reads_back(tiny_tl_text, tmp_path):
    model = tiny_tl_text
    assert any(t.ndim == 0 for t in model.state_dict().values())  # IGNORE is 0-dim
    texts = _models.SENTENCES[:4]
    hooks = "blocks.*.hook_resid_post"
    store = cache_activations(model, texts, hooks, tmp_path / "s", batch_size=3)
    again = ActivationStore.open(tmp_path / "s")
    assert again.hook_points == ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    meta = again.meta
    # every row equals TransformerLens's own cache at (sample, position)
    enc = load_model(model).tokenize(texts)
    _, cache = model.run_with_cache(enc["input_ids"], attention_mask=enc["attention_mask"])
    for hook in again.hook_points:
        want = cache[hook][meta["sample_idx"], meta["position"]].numpy()
        np.testing.assert_allclose(again.rows(hook), want, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(
        meta["token_id"], enc["input_ids"][meta["sample_idx"], meta["position"]].numpy()
    )
    assert len(store) == len(meta["sample_idx"]) > 0


def test_batchnorm_cnn_caches_and_reads_back(bn_cnn, tmp_path):
    x = torch.randn(10, 1, 8, 8)
    store = cache_activations(bn_cnn, x, ["1", "8"], tmp_path / "s", batch_size=4)
    assert store.d("1") == 4 * 8 * 8 and store.d("8") == 10
    with torch.no_grad():
        np.testing.assert_allclose(store.rows("8"), bn_cnn(x).numpy(), atol=1e-5, rtol=1e-5)
        bn_out = bn_cnn[:2](x).flatten(1).numpy()
    np.testing.assert_allclose(ActivationStore.open(tmp_path / "s").rows("1"), bn_out, atol=1e-5)


def test_scalar_parameter_module_caches_and_reads_back(tmp_path):
    model = _models.ScalarParam().eval()
    x = torch.randn(7, 8)
    store = cache_activations(model, x, ["body.1", "body.0"], tmp_path / "s")
    with torch.no_grad():
        np.testing.assert_allclose(store.rows("body.1"), model.body(x).numpy(), atol=1e-6)
        np.testing.assert_allclose(store.rows("body.0"), model.body[0](x).numpy(), atol=1e-6)


def test_fingerprint_sees_every_zero_dim_tensor(bn_cnn):
    base = handle_fingerprint(load_model(bn_cnn))["weights_sha256"]
    bn_cnn[1].num_batches_tracked.fill_(5)  # a 0-dim long buffer
    changed = handle_fingerprint(load_model(bn_cnn))["weights_sha256"]
    assert changed != base
    model = _models.ScalarParam()
    before = handle_fingerprint(load_model(model))["weights_sha256"]
    with torch.no_grad():
        model.scale.fill_(2.0)  # a 0-dim float parameter
    assert handle_fingerprint(load_model(model))["weights_sha256"] != before


def test_fingerprint_of_ndim_weights_is_unchanged_by_the_fix(mlp):
    """Stores written before the fix still resume: the n-dim hash is the old byte hash."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(mlp.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    assert handle_fingerprint(load_model(mlp))["weights_sha256"] == digest.hexdigest()
