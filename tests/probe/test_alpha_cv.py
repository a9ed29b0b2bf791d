"""The sweep's default L2 strength: inner cross-validation over scikit-learn's C grid,
batched and warm-started (issue 15.2, ``probe._alpha``)."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from hiddenlens.probe import _alpha, sweep
from hiddenlens.probe._alpha import C_GRID, N_INNER, fit_cv
from hiddenlens.probe._solver import fit_batched
from hiddenlens.store import MemorySource


def _planted(seed, n=160, d=120, signals=(0.2,)):
    """Few rows, many dims: one label written along a random direction, more weakly or
    more strongly per layer; features on unequal scales."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    layers = {}
    for k, signal in enumerate(signals):
        mu = rng.normal(size=d) * signal * 4 / np.sqrt(d)
        X = rng.normal(size=(n, d)) + np.outer(2 * y - 1, mu)
        layers[f"l{k}"] = (X * rng.uniform(0.5, 5, d)).astype(np.float32)
    return layers, y


@pytest.mark.filterwarnings("ignore::FutureWarning")  # sklearn 1.9's notices of 1.10 changes
def test_default_sweep_within_a_point_of_logistic_regression_cv():
    """Same outer folds, same inner folds, same C grid: nested LogisticRegressionCV."""
    ours, ref = [], []
    for s in range(2):
        layers, y = _planted(s, signals=(0.15, 0.3, 0.6))
        outer = StratifiedKFold(4, shuffle=True, random_state=s)
        res = sweep(layers, y, cv=outer, n_boot=10)
        inner = StratifiedKFold(N_INNER, shuffle=True, random_state=0)
        lrcv = LogisticRegressionCV(Cs=sorted(C_GRID), cv=inner, scoring="accuracy")
        for i, X in enumerate(layers.values()):
            with threadpool_limits(1):  # BLAS threads on a shared machine only spin
                sk = cross_val_score(make_pipeline(StandardScaler(), lrcv), X, y, cv=outer)
            ours.append(res.fold_scores[i].mean())
            ref.append(sk.mean())
    assert abs(np.mean(ours) - np.mean(ref)) <= 0.01, (np.mean(ours), np.mean(ref))


def test_chosen_alpha_differs_between_easy_and_hard_layers_and_is_reported():
    rng = np.random.default_rng(0)
    n, d = 240, 60
    y = rng.integers(0, 2, n)
    mu = rng.normal(size=d) / np.sqrt(d)
    # hard: a weak signal spread over every dim (a strong penalty, i.e. nearest-mean, wins);
    # easy: the label in one dim under a shared nuisance that only an unshrunk probe cancels
    hard = rng.normal(size=(n, d)) + 0.7 * np.outer(2 * y - 1, mu)
    easy = rng.normal(size=(n, d))
    easy[:, :10] += 3 * rng.normal(size=(n, 1))
    easy[:, 0] += 2 * y - 1
    layers = {"hard": hard.astype(np.float32), "easy": easy.astype(np.float32)}
    res = sweep(layers, y, cv=3, n_boot=20)
    alpha = res.extra["alpha"]
    n_train = n * 2 / 3
    grid = 1 / (np.asarray(C_GRID) * n_train)
    assert np.all((alpha >= grid.min() * 0.98) & (alpha <= grid.max() * 1.02))
    assert alpha[0] > 10 * alpha[1], alpha  # the hard layer is penalised far more
    m = res.to_metrics()
    assert m["probe/alpha/hard"] == pytest.approx(alpha[0])
    assert m["probe/alpha/easy"] == pytest.approx(alpha[1])
    # alpha= still fixes it, for every layer
    fixed = sweep(layers, y, cv=3, n_boot=20, alpha=1 / n_train)
    assert fixed.extra["alpha"] == pytest.approx([1 / n_train] * 2)
    # the choice is at least as good as C = 1 where overfitting costs (the hard layer)
    assert res.score[0] >= fixed.score[0] - 0.02
    assert np.array_equal(sweep(layers, y, cv=3, n_boot=20, alpha="cv").score, res.score)
    with pytest.raises(ValueError, match="'cv'"):
        sweep(layers, y, alpha="auto")


def _straddling(train_w, w_in, doc) -> int:
    """How many (outer fold, inner fold) pairs have a document on both inner sides."""
    bad = 0
    for p in range(train_w.shape[0]):
        for j in range(w_in.shape[1]):
            assert not (w_in[p, j] > 0)[train_w[p] == 0].any()  # inside the outer training set
            inner_train = set(doc[w_in[p, j] > 0])
            inner_test = set(doc[(train_w[p] > 0) & (w_in[p, j] == 0)])
            assert inner_train and inner_test
            bad += bool(inner_train & inner_test)
    return bad


def test_inner_folds_respect_the_documents_of_the_outer_folds(monkeypatch):
    """Token rows of 60 documents, a random per-document label: inner folds that split a
    document would choose alpha by how well the probe memorises documents."""
    rng = np.random.default_rng(0)
    n_docs, per_doc, d = 60, 6, 40
    doc = np.repeat(np.arange(n_docs), per_doc)
    X = (rng.normal(size=(n_docs, d))[doc] * 3 + rng.normal(size=(len(doc), d))).astype(np.float32)
    label = rng.permutation(np.arange(n_docs) % 2)[doc]
    src = MemorySource({"layer": X}, {"sample_idx": doc})
    seen = []
    real = _alpha.inner_weights

    def spy(train_w, y, groups, n_inner, seed):
        out = real(train_w, y, groups, n_inner, seed)
        seen.append((train_w, out))
        return out

    monkeypatch.setattr(_alpha, "inner_weights", spy)
    res = sweep(src, label, cv=4, n_boot=20)
    assert res.score[0] <= res.chance + 0.1, (res.score[0], res.chance)
    assert _straddling(*seen.pop(), doc) == 0
    # the check can fail: split by rows (explicitly), inner folds share documents too
    with pytest.warns(UserWarning, match="per-document label"):
        leaky = sweep(src, label, cv=4, n_boot=20, groups=None)
    assert _straddling(*seen.pop(), doc) == 4 * N_INNER
    assert leaky.score[0] > res.chance + 0.2


def test_path_equals_separate_fits_at_the_chosen_c():
    """The warm-started path ends where a cold fit at the chosen C does, and the inner
    score picks what fitting each C separately would pick."""
    layers, y = _planted(3, n=200, d=30, signals=(0.6,))
    X = layers["l0"]
    Xt, yt = torch.from_numpy(X)[None], torch.from_numpy(y)
    w = np.ones((1, len(y)), np.float32)
    kw = dict(n_outputs=1, loss="logistic", tol=1e-6, max_iter=2000)
    fit, best = fit_cv(Xt, yt, w, np.asarray(C_GRID), **kw)
    C = C_GRID[best[0, 0]]
    cold = fit_batched(Xt, yt, torch.from_numpy(w), torch.tensor([1 / (C * len(y))]), **kw)
    np.testing.assert_allclose(fit.W.numpy(), cold.W.numpy(), rtol=0.02, atol=2e-3)
    # inner folds: the same choice as LogisticRegressionCV's folds, scored by accuracy
    inner = StratifiedKFold(N_INNER, shuffle=True, random_state=0)
    acc = []
    for c in sorted(C_GRID):
        scores = []
        for tr, te in inner.split(X, y):
            a = torch.tensor([1 / (c * len(tr))])
            wt = torch.zeros(1, len(y))
            wt[0, tr] = 1
            f = fit_batched(Xt, yt, wt, a, **kw)
            z = f.logits(Xt)[0, 0, te, 0].numpy()
            scores.append(((z > 0) == y[te]).sum())
        acc.append(sum(scores))
    assert acc[sorted(C_GRID).index(C)] == max(acc)


def test_inner_folds_need_enough_groups():
    X = np.random.default_rng(0).normal(size=(40, 5)).astype(np.float32)
    y = np.arange(40) % 2
    src = MemorySource({"layer": X}, {"sample_idx": np.arange(40) // 10})  # 4 documents
    with pytest.raises(ValueError, match="fewer than the 3 inner folds"):
        sweep(src, y, cv=2, n_boot=5)
    assert sweep(src, y, cv=2, n_boot=5, alpha=0.1).extra["alpha"][0] == 0.1
