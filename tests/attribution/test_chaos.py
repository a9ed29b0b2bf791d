"""ChaosMining data and top-k recall: planted relevant features, exact methods recall them all."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens import parse_key
from hiddenlens.attribution.chaos import (
    CHAOS_FUNCTIONS,
    CHAOS_METHODS,
    ChaosRecall,
    chaos_attributions,
    make_chaos_data,
    topk_hits,
    topk_recall,
)


def test_chaos_data_depends_only_on_the_relevant_features():
    d = make_chaos_data(500, n_relevant=4, n_noise=20, function="mixed", label_noise=0.0, seed=3)
    assert d.x.shape == (500, 24) and d.n_features == 24 and d.chance == pytest.approx(4 / 24)
    z = d.x[:, d.relevant].astype(np.float64)
    want = z[:, 0] + z[:, 1] ** 2 + np.sin(np.pi * z[:, 2]) + z[:, 3] ** 3
    assert np.allclose(d.y_true, want, atol=1e-5) and np.array_equal(d.y, d.y_true)
    assert np.abs(d.x).max() <= 1.0
    noisy = make_chaos_data(500, n_relevant=4, n_noise=20, label_noise=0.5, seed=3)
    assert np.array_equal(noisy.relevant, d.relevant)
    assert 0.4 < np.std(noisy.y - noisy.y_true) < 0.6
    for f in CHAOS_FUNCTIONS:
        assert make_chaos_data(10, function=f).y.shape == (10,)
    with pytest.raises(ValueError, match="accepted"):
        make_chaos_data(10, function="cubic")


def test_topk_recall_planted():
    attr = np.zeros((3, 10))
    attr[0, [2, 5]] = [1.0, -2.0]  # exactly the relevant ones (sign ignored)
    attr[1, [0, 1]] = 3.0  # none of them
    attr[2, [2, 9]] = 1.0  # half
    assert topk_recall(attr, [2, 5]).tolist() == [1.0, 0.0, 0.5]
    assert topk_recall(attr, [2, 5], k=3)[0] == 1.0
    with pytest.raises(ValueError, match="relevant must be indices in 0..9"):
        topk_recall(attr, [10])


def test_a_model_using_only_the_relevant_features_gets_recall_one():
    d = make_chaos_data(64, n_relevant=3, n_noise=30, seed=1)
    lin = nn.Linear(d.n_features, 1)
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, torch.as_tensor(d.relevant)] = torch.tensor([1.0, -0.5, 2.0])
    model = nn.Sequential(lin, nn.Flatten(0))  # [N] output: target=None
    attrs = chaos_attributions(model, torch.tensor(d.x), ig_steps=4, smoothgrad_samples=4)
    assert set(attrs) == set(CHAOS_METHODS)
    for name, a in attrs.items():
        assert np.all(topk_recall(a, d.relevant) == 1.0), name
    # a model reading only irrelevant features scores zero
    with torch.no_grad():
        lin.weight.zero_()
        lin.weight[0, :3] = torch.tensor([1.0, 1.0, 1.0])
    x = torch.tensor(d.x)
    sal = chaos_attributions(model, x, methods=["saliency"])["saliency"]
    overlap = len(set(range(3)) & set(d.relevant.tolist())) / 3
    assert np.allclose(topk_recall(sal, d.relevant), overlap)


def test_chaos_recall_metrics_follow_the_key_grammar():
    res = ChaosRecall.from_levels(
        [10, 100],
        [{"saliency": 1.0, "ablation": 0.8}, {"saliency": 0.6, "ablation": 0.4}],
        chance=[5 / 15, 5 / 105],
        fit=[0.99, 0.9],
    )
    m = res.to_metrics()
    assert m["attribution/chaos_recall_saliency/n_noise=100"] == 0.6
    assert m["attribution/chaos_r2/n_noise=10"] == 0.99
    assert all(parse_key(k)[0] == "attribution" for k in m)
    with pytest.raises(ValueError, match="accepted"):
        chaos_attributions(nn.Linear(3, 1), torch.zeros(2, 3), methods=["shap"])


def test_chaos_recall_keeps_the_spread_over_seeds():
    res = ChaosRecall.from_levels(
        [10], [{"saliency": [0.5, 0.7, 0.9]}], chance=[0.1], fit=[0.9]
    )
    assert res.recall["saliency"][0] == pytest.approx(0.7)
    assert res.sd["saliency"][0] == pytest.approx(0.2)
    assert res.to_metrics()["attribution/chaos_recall_saliency_sd/n_noise=10"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="2 levels, 1 dicts"):
        ChaosRecall.from_levels([10, 20], [{"saliency": 0.5}], chance=[0.1], fit=[0.9])
    with pytest.raises(ValueError, match="0 levels, 0 dicts"):
        ChaosRecall.from_levels([], [], chance=[], fit=[])


def test_topk_hits_per_relevant_feature():
    attr = np.zeros((4, 10))
    attr[:, 2] = 5.0  # feature 2 always first
    attr[:2, 7] = -4.0  # feature 7 in the top 2 of half the examples (sign ignored)
    attr[2:, 0] = 4.0  # an irrelevant feature takes its place in the others
    hits = topk_hits(attr, [7, 2])  # reported in sorted order: 2, 7
    assert hits.tolist() == [1.0, 0.5]
    # the mean of the hit rates is the mean recall (k = number of relevant features)
    assert hits.mean() == pytest.approx(topk_recall(attr, [2, 7]).mean())
    assert topk_hits(attr, [2, 7], k=1).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="k must be in"):
        topk_hits(attr, [2, 7], k=11)


def test_topk_scores_refuse_shapes_and_indices_they_would_misread():
    attr = np.zeros((3, 10))
    for f in (topk_recall, topk_hits):
        with pytest.raises(ValueError, match=r"\[N >= 1, n_features, ...\], got shape \(10,\)"):
            f(np.zeros(10), [1])  # one example's map, not ten one-feature examples
        with pytest.raises(ValueError, match=r"got shape \(0, 10\)"):
            f(np.zeros((0, 10)), [1, 2])
        with pytest.raises(ValueError, match=r"integer feature indices, got \[1.5\]"):
            f(attr, [1.5])  # would be truncated to feature 1
    assert topk_recall(attr, np.array([2, 5], dtype=np.int32)).shape == (3,)
