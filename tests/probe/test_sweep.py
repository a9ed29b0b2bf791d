import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from hiddenlens.probe import sweep


def test_planted_label_recovered_and_noise_at_chance(planted):
    layers, y, _ = planted
    r = sweep(layers, y, cv=5)
    assert r.hook_points == ["noise", "noisy", "clean"]
    assert r.best()[0] == "clean" and r.score[2] > 0.95
    assert r.ci_low[2] <= r.score[2] <= r.ci_high[2]
    # the noise layer's interval covers chance
    assert r.ci_low[0] <= 0.5 + 0.01 and r.score[0] < 0.56
    assert r.score[0] < r.score[1] < r.score[2]
    m = r.to_metrics()
    assert m["probe/accuracy/clean"] == pytest.approx(r.score[2])
    assert set(m) >= {"probe/accuracy_ci_low/noise", "probe/accuracy_ci_high/noisy"}


def test_shuffled_labels_at_chance(planted):
    layers, y, _ = planted
    r = sweep(layers, np.random.default_rng(5).permutation(y), cv=5)
    assert np.all(np.abs(r.score - 0.5) < 0.06)
    assert np.all(r.ci_low < 0.5 + 0.02)


def test_batched_sweep_equals_sklearn_loop_on_same_folds(planted):
    layers, y, _ = planted
    r = sweep(layers, y, cv=5, seed=3, alpha=1.0 / (0.8 * len(y)), tol=1e-6)
    folds = StratifiedKFold(5, shuffle=True, random_state=3)
    for i, X in enumerate(layers.values()):
        ref = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        sk = cross_val_score(ref, X, y, cv=folds)
        np.testing.assert_allclose(r.fold_scores[i], sk, atol=0.01)


def test_sklearn_estimator_and_nearest_mean_paths(planted):
    layers, y, _ = planted
    r_sk = sweep(layers, y, probe=LogisticRegression(max_iter=1000), cv=3)
    r_nm = sweep(layers, y, probe="nearest_mean", cv=3)
    assert r_sk.score[2] > 0.9 and r_nm.score[2] > 0.75
    assert r_nm.log_loss_bits is None


def test_regression_and_multiclass(planted):
    layers, _, score = planted
    r = sweep(layers, score, cv=3)
    assert r.metric == "r2" and r.score[2] > 0.99 and r.score[0] < 0.05
    y4 = np.digitize(score, np.quantile(score, [0.25, 0.5, 0.75]))
    r4 = sweep(layers, y4, cv=3)
    assert r4.score[2] > 0.8 and abs(r4.chance - 0.25) < 0.01
    assert r4.log_loss_bits[2] < r4.log_loss_bits[0]
    assert r4.prior_bits == pytest.approx(2.0, abs=0.02)


def test_groups_keep_groups_on_one_side(planted):
    layers, y, _ = planted
    groups = np.arange(len(y)) // 15
    r = sweep(layers, y, cv=3, groups=groups)
    assert r.score[2] > 0.9 and r.fold_scores.shape == (3, 3)


def FakeStore(layers, meta):
    """A source with a gradient entry next to the hooks (skipped unless named)."""
    from hiddenlens.store import MemorySource

    return MemorySource(dict(layers, **{"clean#grad": layers["clean"]}), meta=meta)


def test_store_contract_and_meta_labels(planted):
    layers, y, _ = planted
    store = FakeStore(layers, {"label": y})
    r = sweep(store, "label", cv=3, rows=np.arange(0, len(y), 2))
    assert r.hook_points == ["noise", "noisy", "clean"] and r.n_rows == len(y) // 2
    with pytest.raises(ValueError, match="not found"):
        sweep(store, "nope")


def test_bad_input(planted):
    layers, y, _ = planted
    with pytest.raises(ValueError, match="entries but there are"):
        sweep(layers, y[:-3])
    with pytest.raises(ValueError, match="at least 2 classes"):
        sweep(layers, np.zeros(len(y), int))
    with pytest.raises(ValueError, match="rarest class has 2 rows, fewer than cv=5"):
        yy = y.copy()
        yy[:2] = 7
        sweep(layers, yy, cv=5)
    bad = dict(layers)
    bad["noise"] = bad["noise"].copy()
    bad["noise"][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sweep(bad, y)
    with pytest.raises(ValueError, match="unknown hook points"):
        sweep(layers, y, ["clean", "nope"])
    with pytest.raises(ValueError, match="probe must be"):
        sweep(layers, y, probe="mlp")
    with pytest.raises(TypeError, match="cannot read activations from list"):
        sweep([1, 2], y)
