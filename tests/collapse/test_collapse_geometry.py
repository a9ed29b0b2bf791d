"""UFM simulator, imbalance metrics and layer-in vs layer-out variability."""

import numpy as np
import pytest

from hiddenlens.collapse import (
    UFMConfig,
    accumulate,
    imbalance_metrics,
    layer_metrics,
    simplex_etf,
    simulate_ufm,
    variability_ratio,
)


@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_ufm_reaches_exact_collapse(loss):
    res = simulate_ufm(UFMConfig(n_classes=4, d=8, n_per_class=5, loss=loss, steps=3000))
    first, last = res.history[0][1], res.history[-1][1]
    assert first["nc1"] > 1.0
    assert last["nc1"] < 1e-8
    assert last["means_etf_dist"] < 1e-4 and last["means_equinorm"] < 1e-4
    assert last["nc3"] < 1e-2
    assert last["train_acc"] == 1.0
    steps, nc1 = res.curve("nc1")
    assert steps[0] == 0 and steps[-1] == 3000 and nc1[-1] < nc1[len(nc1) // 2] < nc1[0]


def test_ufm_ce_classifier_is_self_dual():
    res = simulate_ufm(UFMConfig(steps=4000, seed=1))
    assert res.history[-1][1]["nc3"] < 1e-4
    assert res.history[-1][1]["classifier_etf_dist"] < 1e-3


def test_ufm_config_validation():
    with pytest.raises(ValueError, match="loss"):
        UFMConfig(loss="hinge")
    with pytest.raises(ValueError, match="d must be"):
        UFMConfig(n_classes=5, d=3)


def test_simplex_etf_rejects_small_d():
    with pytest.raises(ValueError, match="d >= 4"):
        simplex_etf(5, 3)


def test_imbalance_metrics_planted():
    # orthogonal raw class means whose norms grow with the class count
    counts = np.array([40, 30, 4, 4])
    y = np.repeat(np.arange(4), counts)
    norms = np.array([4.0, 3.0, 1.0, 0.5])
    means = np.eye(4, 6) * norms[:, None]
    rng = np.random.default_rng(0)
    x = means[y] + 0.01 * rng.standard_normal((len(y), 6))
    w = np.eye(4, 6) * np.array([1.0, 1.0, 2.0, 3.0])[:, None]
    m = imbalance_metrics(accumulate(x, y), classifier=w)
    assert m["collapse/n_tail"] == 2
    assert m["collapse/count/2"] == 4 and m["collapse/count/0"] == 40
    assert m["collapse/mean_norm/0"] == pytest.approx(4.0, abs=0.01)
    assert m["collapse/corr_mean_norm_count"] > 0.9  # ties among the tail counts
    assert m["collapse/corr_classifier_norm_count"] < -0.9
    assert m["collapse/cos_classifier_tail"] == pytest.approx(0.0)
    assert m["collapse/cos_means_head_tail"] == pytest.approx(0.0, abs=0.01)
    assert m["collapse/classifier_norm_tail_over_head"] == pytest.approx(2.5)
    assert m["collapse/mean_norm_tail_over_head"] == pytest.approx(0.75 / 3.5, abs=0.01)


def test_variability_ratio():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x_in = rng.standard_normal((90, 5)) + 3 * np.eye(3, 5)[y]
    s_in = accumulate(x_in, y)
    # a layer that scales and rotates everything keeps the ratio at 1
    q = np.linalg.qr(rng.standard_normal((5, 5)))[0]
    r = variability_ratio(s_in, accumulate(2.0 * x_in @ q, y))
    assert r["var_ratio"] == pytest.approx(1.0) and r["nc1_ratio"] == pytest.approx(1.0)
    # a layer that halves within-class deviations divides both by 4
    mu = np.stack([x_in[y == k].mean(0) for k in range(3)])
    x_out = mu[y] + 0.5 * (x_in - mu[y])
    r = variability_ratio(s_in, accumulate(x_out, y))
    assert r["var_ratio"] == pytest.approx(0.25) and r["nc1_ratio"] == pytest.approx(0.25)
    out = layer_metrics({"a": s_in, "b": accumulate(x_out, y)})
    assert out["collapse/var_ratio/b"] == pytest.approx(0.25) and "collapse/var_ratio/a" not in out
    assert "collapse/nc1/a" in out and "collapse/nc1/b" in out
