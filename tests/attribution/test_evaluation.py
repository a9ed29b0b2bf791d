"""Evaluation of attributions, block data, PGD, layer masking and feature visualisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hiddenlens.attribution as A
from hiddenlens.attribution.blocks import make_block_digits, null_patch, pgd_attack
from hiddenlens.attribution.evaluation import (
    deletion_insertion,
    diffroar,
    grid_pointing_game,
    keep_by_attribution,
)
from hiddenlens.attribution.featvis import activation_maximisation, multifaceted_visualisation
from hiddenlens.attribution.masking import layer_masked_forward, neighbour_fill


def test_deletion_insertion_orders():
    torch.manual_seed(0)
    lin = nn.Linear(10, 1)
    x = torch.rand(6, 10)
    good = A.input_x_gradient(lin, x).attributions
    c_good = deletion_insertion(lin, x, good, n_steps=10)
    c_bad = deletion_insertion(lin, x, -good, n_steps=10)
    assert c_good.deletion.shape == (6, 11) and c_good.fractions[-1] == 1.0
    # start and end points are the input and the baseline
    out = lin(x)[:, 0].detach().numpy()
    assert np.allclose(c_good.deletion[:, 0], out, atol=1e-6)
    assert np.allclose(c_good.insertion[:, -1], out, atol=1e-6)
    good, bad = c_good.to_metrics(), c_bad.to_metrics()
    assert good["attribution/deletion_auc"] < bad["attribution/deletion_auc"]
    assert good["attribution/insertion_auc"] > bad["attribution/insertion_auc"]


def test_keep_and_diffroar_planted():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((400, 20)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(int)
    kept = keep_by_attribution(x[:2], np.tile(np.arange(20.0), (2, 1)), 0.1, keep="top")
    assert np.array_equal(kept[:, 18:], x[:2, 18:]) and np.all(kept[:, :18] == 0)
    attr = np.zeros_like(x)
    attr[:, :3] = 1.0  # a planted perfect attribution
    from sklearn.linear_model import LogisticRegression

    def fit(xs, ys):
        return LogisticRegression(max_iter=200).fit(xs, ys).predict

    data = (x[:300], y[:300], x[300:], y[300:])
    res = diffroar(data, (attr[:300], attr[300:]), fractions=(0.15,), fit=fit)
    assert res["attribution/diffroar/k=0.15"] > 0.3 and res["attribution/acc_top/k=0.15"] > 0.9
    rev = diffroar(data, (-attr[:300] + 1, -attr[300:] + 1), fractions=(0.15,), fit=fit)
    assert rev["attribution/diffroar/k=0.15"] < 0
    with pytest.raises(ValueError, match="exactly one"):
        diffroar(data, (None, attr[300:]))


def test_grid_pointing_game():
    a = np.zeros((2, 16, 8))
    a[:, 8:] = 1.0
    assert grid_pointing_game(a, (2, 1), 1) == pytest.approx(1.0)
    assert grid_pointing_game(a, (2, 1), np.array([0, 1])) == pytest.approx(0.5)
    assert grid_pointing_game(np.ones((3, 1, 16, 8)), (2, 1), 0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="cell index"):
        grid_pointing_game(a, (2, 1), 2)


def test_block_digits_and_pgd():
    train, test = make_block_digits(copies=2, seed=0)
    assert train.x.shape[1:] == (1, 16, 8) and set(np.unique(train.y)) == {0, 1}
    for data in (train, test):
        for i in range(5):
            null = data.x[i, 0, 8 * (1 - data.signal_block[i]) : 8 * (2 - data.signal_block[i])]
            assert np.array_equal(null, null_patch())
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(128, 2))
    x, y = torch.tensor(test.x[:32]), torch.tensor(test.y[:32])
    adv = pgd_attack(model, x, y, eps=0.5, steps=5, seed=0)
    norms = (adv - x).flatten(1).norm(dim=1)
    assert norms.max() <= 0.5 + 1e-5 and adv.min() >= 0 and adv.max() <= 1
    loss = nn.functional.cross_entropy
    assert loss(model(adv), y) > loss(model(x), y)


def test_layer_masking(cnn):
    x = torch.rand(2, 1, 8, 8)
    const = torch.full((1, 3, 6, 6), 0.7)
    keep = torch.ones(1, 1, 6, 6)
    keep[..., 1:4, 2:5] = 0
    assert torch.allclose(neighbour_fill(const, keep), const)  # holes filled from neighbours
    out = layer_masked_forward(cnn, x, torch.ones_like(x), ["1", "4"])
    assert torch.allclose(out, cnn(x))  # nothing masked: the original model
    occ = A.occlusion(
        cnn, x, window=(1, 4, 4), strides=(1, 4, 4), target=3, layer_mask_hooks=["1", "4"]
    )
    assert occ.attributions.shape == x.shape and occ.info["layer_masking"]


def test_activation_maximisation_linear_unit():
    torch.manual_seed(0)
    w = torch.randn(1, 1, 6, 6)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 1))
    model[1].weight.data = w.reshape(1, 36)
    vis = activation_maximisation(
        model, "1", 0, shape=(1, 6, 6), steps=60, lr=0.1, jitter=0, blur_every=0
    )
    assert vis.trace[-1, 0] > vis.trace[0, 0]
    # the optimum of a linear unit in [0, 1]^d: bright where the weight is positive
    img = vis.images[0, 0]
    assert (img[w[0, 0] > 0.3].mean() - img[w[0, 0] < -0.3].mean()) > 0.3
    fvis = activation_maximisation(model, "1", 0, shape=(1, 6, 6), steps=30, frequency_prior=True)
    assert fvis.images.shape == (1, 1, 6, 6) and fvis.final[0] > fvis.trace[0, 0]


def test_multifaceted_recovers_planted_facets():
    torch.manual_seed(0)
    # a unit that fires for a bright left column OR a bright right column: two facets
    data = torch.rand(60, 1, 6, 6) * 0.1
    data[:20, 0, :, 0] = 1.0
    data[20:40, 0, :, 5] = 1.0
    model = nn.Sequential(nn.Conv2d(1, 2, (6, 1)), nn.ReLU(), nn.Flatten())
    model[0].weight.data.zero_()
    model[0].bias.data.zero_()
    model[0].weight.data[0, 0, :, 0] = 1.0
    vis = multifaceted_visualisation(
        model, "2", lambda a: a[:, :6].max(1).values, data, n_facets=2, top_n=40, steps=5
    )
    groups = sorted(tuple(sorted(set((f < 20).tolist()))) for f in vis.facets)
    assert groups == [(False,), (True,)]  # each facet holds one planted group
    assert vis.images.shape == (2, 1, 6, 6)


def test_objectives_and_top_examples():
    from hiddenlens.attribution.featvis import code_direction, sae_latent, top_activating_examples

    class Sae:
        def encode(self, x):
            return torch.relu(x)

        def decode(self, z):
            return z

    act = torch.tensor([[[1.0, -2.0], [3.0, 4.0]]])  # [1 example, 2 tokens, d=2]
    assert float(sae_latent(Sae(), 1)(act)[0]) == pytest.approx(2.0)  # mean of relu(-2), relu(4)
    assert float(code_direction(torch.tensor([[0.0, 1.0]]), 0)(act)[0]) == pytest.approx(1.0)

    from hiddenlens.store import MemorySource

    rows = np.stack([np.arange(50) % 17, np.zeros(50)], 1)
    store = MemorySource({"h": rows}, meta={"sample_idx": np.arange(50) // 5})
    top = top_activating_examples(store, "h", 0, k=3, chunk=7)
    assert top.values.tolist() == [16, 16, 15] and top.rows.tolist() == [16, 33, 15]
    assert top.meta["sample_idx"].tolist() == [3, 6, 3]
