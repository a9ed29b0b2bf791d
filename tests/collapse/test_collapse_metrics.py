"""NC metrics against closed forms and a plain numpy reference."""

import warnings

import numpy as np
import pytest

from hiddenlens.collapse import SigmaBWarning, cdnv_matrix, metrics, simplex_etf
from hiddenlens.collapse.stats import accumulate


def reference(x, y, w, b):
    """Plain, loop-based implementation of the formulas in anchors.md."""
    classes = np.unique(y)
    c = len(classes)
    mu = np.stack([x[y == k].mean(0) for k in classes])
    mu_g = x.mean(0)
    m = mu - mu_g
    sw = np.zeros((x.shape[1], x.shape[1]))
    for i in range(len(x)):
        dev = x[i] - mu[np.searchsorted(classes, y[i])]
        sw += np.outer(dev, dev)
    sw /= len(x)
    sb = sum(np.outer(m[k], m[k]) for k in range(c)) / c
    out = {"collapse/nc1": np.trace(sw @ np.linalg.pinv(sb, rcond=1e-10, hermitian=True)) / c}
    var = [np.mean(np.sum((x[y == k] - mu[j]) ** 2, 1)) for j, k in enumerate(classes)]
    pairs = [(i, j) for i in range(c) for j in range(i + 1, c)]
    out["collapse/cdnv"] = np.mean(
        [(var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2)) for i, j in pairs]
    )
    for name, v in (("means", m), ("classifier", w)):
        norms = np.array([np.sqrt(np.sum(r**2)) for r in v])
        cos = np.array([v[i] @ v[j] / (norms[i] * norms[j]) for i, j in pairs])
        out[f"collapse/{name}_equinorm"] = norms.std() / norms.mean()
        out[f"collapse/{name}_equiangular"] = cos.std()
        out[f"collapse/{name}_maxangle"] = np.mean(np.abs(cos + 1 / (c - 1)))
        g = v @ v.T
        target = (np.eye(c) - 1 / c) / np.sqrt(c - 1)
        out[f"collapse/{name}_etf_dist"] = np.sqrt(np.sum((g / np.sqrt(np.sum(g**2)) - target) ** 2))
    out["collapse/nc3"] = np.sum((w / np.sqrt(np.sum(w**2)) - m / np.sqrt(np.sum(m**2))) ** 2)
    net = np.argmax(x @ w.T + b, 1)
    ncc = np.array([np.argmin(np.sum((mu - r) ** 2, 1)) for r in x])
    out["collapse/nc4"] = np.mean(net != classes[ncc])
    out["collapse/ncc_acc"] = np.mean(classes[ncc] == y)
    return out


def test_random_data_matches_reference():
    rng = np.random.default_rng(0)
    c, d, n = 5, 12, 300
    y = rng.integers(0, c, n)
    x = rng.standard_normal((n, d)) + 2.0 * rng.standard_normal((c, d))[y]
    w, b = rng.standard_normal((c, d)), rng.standard_normal(c)
    got = metrics(x, y, classifier=(w, b))
    ref = reference(x, y, w, b)
    for k, v in ref.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    assert got["collapse/nc1_rank"] == c - 1


def test_cdnv_matrix_symmetric_with_nan_diagonal():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), 10)
    x = rng.standard_normal((40, 3)) + 3 * np.eye(4, 3)[y]
    mat = cdnv_matrix(accumulate(x, y))
    assert np.all(np.isnan(np.diag(mat)))
    off = ~np.eye(4, dtype=bool)
    assert np.allclose(mat[off], mat.T[off])


@pytest.mark.parametrize("c,d", [(3, 2), (4, 10), (10, 9)])
def test_simplex_etf_configuration_is_exact_collapse(c, d):
    etf = simplex_etf(c, d, seed=3) * 2.5
    offset = np.linspace(-1, 1, d)
    y = np.repeat(np.arange(c), 4)
    x = etf[y] + offset  # zero within-class spread, class means an ETF around offset
    w = etf.copy()  # W = M
    b = -w @ offset
    m = metrics(x, y, classifier=(w, b))
    assert m["collapse/nc1"] == pytest.approx(0, abs=1e-20)
    assert m["collapse/cdnv"] == pytest.approx(0, abs=1e-20)
    for pre in ("means", "classifier"):
        for k in ("equinorm", "equiangular", "etf_dist", "maxangle"):
            assert m[f"collapse/{pre}_{k}"] == pytest.approx(0, abs=1e-12), f"{pre}_{k}"
    assert m["collapse/nc3"] == pytest.approx(0, abs=1e-20)
    assert m["collapse/nc4"] == 0 and m["collapse/ncc_acc"] == 1


def test_etf_pairwise_cosines():
    e = simplex_etf(6, 8)
    g = e @ e.T
    assert np.allclose(np.diag(g), 1)
    assert np.allclose(g[np.triu_indices(6, 1)], -1 / 5)


def test_two_class_closed_form():
    # classes at ±1 on a line, each with points at mean ± a: Σ_W = a², Σ_B = 1
    a = 0.3
    x = np.array([[-1 - a], [-1 + a], [1 - a], [1 + a]])
    y = np.array([0, 0, 1, 1])
    m = metrics(x, y)
    assert m["collapse/nc1"] == pytest.approx(a**2 / 2)
    assert m["collapse/cdnv"] == pytest.approx((a**2 + a**2) / (2 * 4))
    assert m["collapse/means_equinorm"] == pytest.approx(0)


def test_collinear_means_warn_and_fall_back():
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 20)
    direction = np.array([1.0, 2.0, 0.0, 0.0, 0.0])
    noise = rng.standard_normal((60, 5)) * 0.1
    for k in range(3):  # centre the noise per class so the class means are exactly collinear
        noise[y == k] -= noise[y == k].mean(0)
    x = noise + np.array([-1, 0, 1])[y][:, None] * direction
    with pytest.warns(SigmaBWarning, match="singular or ill-conditioned"):
        m = metrics(x, y)
    assert np.isfinite(m["collapse/nc1"]) and m["collapse/nc1_rank"] == 1
    assert np.isfinite(m["collapse/cdnv"])


def test_identical_means_warn_not_silent():
    x = np.array([[0.0, 1], [0, -1], [1, 0], [-1, 0]])
    y = np.array([0, 0, 1, 1])
    with pytest.warns(SigmaBWarning):
        m = metrics(x, y)
    assert np.isnan(m["collapse/nc1"])


def test_well_conditioned_input_does_not_warn():
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(4), 25)
    x = rng.standard_normal((100, 6)) + 3 * rng.standard_normal((4, 6))[y]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics(x, y)


def test_name_suffix_and_predictions():
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(3), 10)
    x = rng.standard_normal((30, 4)) + 4 * np.eye(3, 4)[y]
    m = metrics(x, y, predictions=y, name="net.2")
    assert set(m) >= {"collapse/nc1/net.2", "collapse/nc4/net.2", "collapse/cdnv/net.2"}
    assert m["collapse/nc4/net.2"] == pytest.approx(1 - m["collapse/ncc_acc/net.2"])
