import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hiddenlens.probe import LinearProbe, LinearProbeRegressor, NearestMeanProbe


def _data(n=600, d=10, k=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 20, d) + rng.normal(size=d) * 10
    y = np.argmax(X @ rng.normal(size=(d, k)) / 10 + rng.normal(size=(n, k)), 1)
    return X.astype(np.float32), y


@pytest.mark.parametrize("k", [2, 4])
def test_matches_sklearn_logistic_on_standardised_data(k):
    X, y = _data(k=k)
    ours = LinearProbe(alpha=1.0 / len(y), tol=1e-7).fit(X, y)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=1e-10, max_iter=5000))
    ref.fit(X, y)
    # same objective => same probabilities, not just the same argmax
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), atol=2e-3)
    assert (ours.predict(X) == ref.predict(X)).mean() > 0.99


def test_regressor_matches_ridge():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(400, 8)).astype(np.float32)
    y = X @ rng.normal(size=8) + 0.3 * rng.normal(size=400) + 4
    alpha = 0.05
    ours = LinearProbeRegressor(alpha=alpha, tol=1e-8).fit(X, y)
    # mean-loss alpha on standardised X == Ridge(alpha * n) on standardised X
    ref = make_pipeline(StandardScaler(), Ridge(alpha=alpha * len(y))).fit(X, y)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-3, atol=1e-3)


def test_l1_gives_exact_zeros_on_irrelevant_features():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(800, 20)).astype(np.float32)
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    probe = LinearProbe(alpha=0.0, l1=0.02, max_iter=3000, tol=1e-6).fit(X, y)
    assert np.all(probe.coef_[0, 2:] == 0)
    assert np.all(probe.coef_[0, :2] != 0)
    assert probe.score(X, y) > 0.95


def test_cross_val_score_and_clone():
    X, y = _data()
    scores = cross_val_score(LinearProbe(), X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.6
    assert clone(LinearProbe(alpha=0.1)).get_params()["alpha"] == 0.1
    assert cross_val_score(NearestMeanProbe(), X, y, cv=3).mean() > 0.5
    assert cross_val_score(LinearProbeRegressor(), X, y.astype(float), cv=3).mean() > 0


def test_nearest_mean_is_nearest_class_centre():
    X, y = _data(k=4)
    probe = NearestMeanProbe().fit(X, y)
    means = np.stack([X[y == c].mean(0) for c in range(4)])
    expected = np.argmin(((X[:, None, :] - means[None]) ** 2).sum(-1), 1)
    assert (probe.predict(X) == expected).all()


def test_bad_input():
    X, y = _data()
    with pytest.raises(ValueError, match="inconsistent|samples"):
        LinearProbe().fit(X, y[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        LinearProbe().fit(X, np.zeros(len(y)))
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LinearProbe().fit(Xn, y)
    with pytest.raises(ValueError, match="alpha"):
        LinearProbe(alpha=-1).fit(X, y)
    with pytest.raises(Exception, match="not fitted"):
        LinearProbe().predict(X)


def test_default_probe_within_a_point_of_sklearn_default_with_few_rows_many_dims():
    """alpha chosen by inner CV; the old fixed alpha=1e-4 overfit (1.2 points below here)."""
    ours, ref = [], []
    for s in range(5):
        rng = np.random.default_rng(s)
        n, d = 300, 150
        y = rng.integers(0, 2, n + 2000)
        X = (rng.normal(size=(n + 2000, d)) + np.outer(2 * y - 1, rng.normal(size=d) * 0.06))
        X = (X * rng.uniform(0.5, 5, d)).astype(np.float32)
        probe = LinearProbe().fit(X[:n], y[:n])
        assert probe.alpha_ in [1 / (c * n) for c in (100, 10, 1, 0.1, 0.01)]
        ours.append(probe.score(X[n:], y[n:]))
        sk = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[:n], y[:n])
        ref.append(sk.score(X[n:], y[n:]))
    assert np.mean(ours) >= np.mean(ref) - 0.01, (np.mean(ours), np.mean(ref))
    fixed = LinearProbe(alpha=0.5).fit(X[:n], y[:n])
    assert fixed.alpha_ == 0.5  # alpha= still fixes it
    with pytest.raises(ValueError, match="cv"):
        LinearProbe(cv=1).fit(X[:n], y[:n])
    with pytest.raises(ValueError, match="alphas"):
        LinearProbe(alphas=[-1.0]).fit(X[:n], y[:n])
