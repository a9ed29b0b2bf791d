import numpy as np
import pytest
import torch

from hiddenlens.probe import cka_matrix, mdl_probe, sweep

store_mod = pytest.importorskip("hiddenlens.store")


def test_sweep_reads_an_activation_store(tmp_path, mlp):
    x = torch.randn(600, 8)
    y = (x[:, 0] > 0).long().numpy()  # readable from the input, hence from layer 0's output
    store = store_mod.cache_activations(
        mlp, x, ["0", "4"], tmp_path / "store", batch_size=100, labels={"sign": y}
    )
    r = sweep(store, "sign", cv=3)
    assert r.hook_points == ["0", "4"] and r.n_rows == 600
    assert r.score[0] > 0.9
    direct = sweep({h: store.rows(h) for h in store.hook_points}, y, cv=3)
    np.testing.assert_allclose(r.score, direct.score)
    assert mdl_probe(store, "sign").codelength_bits.shape == (2,)
    assert cka_matrix(store).matrix.shape == (2, 2)
