"""Bad input fails loudly, naming the bad value."""

import numpy as np
import pytest

from hiddenlens.info import kde_mi, ksg_mi, lossy_mutual_information, mutual_information

rng = np.random.default_rng(0)
X = rng.standard_normal((100, 2))
Y = rng.standard_normal((100, 1))


@pytest.mark.parametrize("estimator", ["binning", "kde_upper", "ksg", "infonce"])
def test_mismatched_counts(estimator):
    with pytest.raises(ValueError, match="rows"):
        mutual_information(X, rng.integers(0, 2, 99), estimator=estimator)


@pytest.mark.parametrize("estimator", ["binning", "kde_upper", "kde_lower", "ksg", "smile"])
def test_nan_rejected(estimator):
    bad = X.copy()
    bad[3, 1] = np.nan
    y = rng.integers(0, 2, 100)
    with pytest.raises(ValueError, match="NaN"):
        mutual_information(bad, y, estimator=estimator)


@pytest.mark.parametrize("estimator", ["binning", "kde_upper", "ksg", "mine"])
def test_constant_variable(estimator):
    y = rng.integers(0, 2, 100)
    with pytest.raises(ValueError, match="constant"):
        mutual_information(np.ones((100, 3)), y, estimator=estimator)


def test_constant_labels():
    with pytest.raises(ValueError, match="constant"):
        mutual_information(X, np.zeros(100, dtype=int), estimator="ksg")
    with pytest.raises(ValueError, match="constant"):
        kde_mi(X, np.zeros(100, dtype=int))


def test_too_few_samples_for_k():
    with pytest.raises(ValueError, match="k=5"):
        ksg_mi(X[:5], Y[:5], k=5)
    labels = np.array([0] * 97 + [1] * 3)
    with pytest.raises(ValueError, match="smallest label has 3"):
        ksg_mi(X, labels, k=3)


def test_too_few_samples_for_bins():
    with pytest.raises(ValueError, match="bins=30"):
        mutual_information(X[:20], None, bins=30, strategy="quantile")
    with pytest.raises(ValueError, match="at least 2 rows"):
        mutual_information(X[:1], None)


def test_bad_parameters():
    with pytest.raises(ValueError, match="estimator must be one of"):
        mutual_information(X, Y, estimator="histogram")
    with pytest.raises(ValueError, match="bins"):
        mutual_information(X, None, bins=1)
    with pytest.raises(ValueError, match="strategy"):
        mutual_information(X, None, strategy="adaptive-ish")
    with pytest.raises(ValueError, match="noise_var"):
        kde_mi(X, None, noise_var=0.0)
    with pytest.raises(ValueError, match="k must be"):
        ksg_mi(X, Y, k=0)
    with pytest.raises(ValueError, match="bootstrap"):
        mutual_information(X, None, bootstrap=-1)
    with pytest.raises(ValueError, match="noise_std"):
        lossy_mutual_information(X, Y, noise_std=-1.0)


def test_wrong_types():
    with pytest.raises(TypeError, match="numeric"):
        mutual_information(np.array(["a", "b", "c"]), None)
    with pytest.raises(TypeError, match="None"):
        kde_mi(None)
    with pytest.raises(TypeError, match="discrete y"):
        kde_mi(X, Y)
    with pytest.raises(ValueError, match="needs both"):
        mutual_information(X, None, estimator="ksg")
