import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from hiddenlens.probe import cka_matrix, linear_cka, moment_features, pool, pool_rows


def _gram_cka(X, Y, debiased):
    """Reference: kernel form with n x n Gram matrices (Kornblith 2019; Song 2012)."""
    X, Y = X - X.mean(0), Y - Y.mean(0)
    K, L = X @ X.T, Y @ Y.T
    n = len(X)

    def hsic(K, L):
        if not debiased:
            H = np.eye(n) - 1.0 / n
            return np.trace(K @ H @ L @ H)
        K, L = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
        one = np.ones(n)
        return (
            np.trace(K @ L)
            + one @ K @ one * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * one @ K @ L @ one
        ) / (n * (n - 3))

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_identity_rotation_scaling_and_reference(debiased):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 12)) @ rng.normal(size=(12, 12))
    Y = X[:, :6] @ rng.normal(size=(6, 9)) + rng.normal(size=(200, 9))
    assert linear_cka(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-10)
    Q = ortho_group.rvs(12, random_state=1)
    base = linear_cka(X, Y, debiased=debiased)
    assert linear_cka(X @ Q * 7.5 + 3.0, Y, debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert base == pytest.approx(_gram_cka(X, Y, debiased), abs=1e-10)
    # not invariant to an arbitrary invertible map
    A = np.diag(np.linspace(0.1, 10, 12))
    assert abs(linear_cka(X @ A, Y, debiased=debiased) - base) > 1e-3


def test_debiased_cka_removes_the_small_n_inflation():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(50, 200)), rng.normal(size=(50, 200))
    assert linear_cka(X, Y) > 0.5  # independent, yet the biased estimate is large
    assert abs(linear_cka(X, Y, debiased=True)) < 0.05


def test_cka_matrix_symmetric_with_unit_diagonal():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 16)).astype(np.float32)
    layers = {
        "a": a,
        "b": a @ rng.normal(size=(16, 16)).astype(np.float32),
        "c": rng.normal(size=(300, 8)),
    }
    r = cka_matrix(layers)
    np.testing.assert_allclose(np.diag(r.matrix), 1.0, atol=1e-5)
    np.testing.assert_allclose(r.matrix, r.matrix.T)
    assert r.matrix[0, 1] > r.matrix[0, 2]
    assert r.matrix[0, 2] == pytest.approx(linear_cka(layers["a"], layers["c"]), abs=1e-5)
    other = cka_matrix(layers, ["a"], other={"x": layers["b"]})
    assert other.matrix.shape == (1, 1) and "probe/cka/a~x" in other.to_metrics()
    with pytest.raises(ValueError, match="rows"):
        linear_cka(a, a[:-1])
    with pytest.raises(ValueError, match="NaN"):
        linear_cka(np.full((5, 2), np.nan), a[:5])


def test_pooling_methods():
    rng = np.random.default_rng(3)
    A = torch.from_numpy(rng.normal(size=(2, 5, 8)).astype(np.float32))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    np.testing.assert_allclose(pool(A, mask, method="mean")[0], A[0, :3].mean(0), rtol=1e-6)
    assert torch.equal(pool(A, mask, method="first"), A[:, 0])
    assert torch.equal(pool(A, mask, method="last")[0], A[0, 2])
    assert pool(A, mask, method="token").shape == (8, 8)
    mom = pool(A.numpy(), mask.numpy(), method="moment", heads=2)
    assert isinstance(mom, np.ndarray) and mom.shape == (2, 8 + 2 * 10)
    # moment features = [mean, upper triangle of each head's covariance]
    cov = np.cov(A[0, :3, :4].numpy().T, bias=True)
    np.testing.assert_allclose(mom[0, 8:18], cov[np.triu_indices(4)], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="method"):
        pool(A, method="max")
    with pytest.raises(ValueError, match="no unmasked"):
        pool(A, torch.zeros(2, 5))


def test_pool_rows_matches_padded_pool():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(9, 4)).astype(np.float32)
    sample = np.array([1, 1, 0, 0, 0, 1, 2, 2, 2])
    pos = np.array([0, 1, 0, 1, 2, 2, 0, 1, 2])
    samples, mean = pool_rows(X, sample, method="mean", position=pos)
    assert list(samples) == [0, 1, 2]
    np.testing.assert_allclose(mean[1], X[[0, 1, 5]].mean(0), rtol=1e-6)
    _, last = pool_rows(X, sample, method="last", position=pos)
    np.testing.assert_allclose(last[1], X[5])
    _, mom = pool_rows(X, sample, method="moment", position=pos, heads=1)
    np.testing.assert_allclose(
        mom[0], moment_features(torch.from_numpy(X[2:5]), 1).numpy(), rtol=1e-5
    )
