"""Group metrics, early decodability, opposing signals and mitigations (hand values)."""

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from hiddenlens.shortcut import (
    DFR,
    OpposingSignals,
    early_decodability,
    equal_opportunity_difference,
    group_metrics,
    group_weights,
    spurious_predictability,
)
from hiddenlens.shortcut.opposing import LossTracker


def test_worst_group_accuracy_hand_case():
    # group 0: 4 rows, 3 right; group 1: 2 rows, 1 right; group 2: 4 rows, all right
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1])
    pred = np.array([0, 0, 0, 1, 1, 0, 1, 1, 0, 1])
    g = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    m = group_metrics(y, pred, g)
    assert m["shortcut/group_acc/0"] == 0.75 and m["shortcut/group_acc/1"] == 0.5 and m["shortcut/group_acc/2"] == 1.0
    assert m["shortcut/worst_group_acc"] == 0.5
    assert m["shortcut/group_gap"] == 0.5
    assert m["shortcut/mean_group_acc"] == pytest.approx(0.75)
    assert m["shortcut/group_weighted_acc"] == pytest.approx(0.8) == m["shortcut/accuracy"]
    w = group_metrics(y, pred, g, weights={0: 1, 1: 1, 2: 2})
    assert w["shortcut/group_weighted_acc"] == pytest.approx((0.75 + 0.5 + 2.0) / 4)


def test_equal_opportunity_difference_hand_case():
    y = np.array([1, 1, 1, 1, 1, 1, 0, 0])
    pred = np.array([1, 1, 1, 1, 0, 0, 1, 0])
    a = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    # TPR(a=0) = 3/3, TPR(a=1) = 1/3
    assert equal_opportunity_difference(y, pred, a) == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    "groups",
    [
        np.array([0, 1, np.nan, 1]),
        np.array([0, 1, -1, 1]),
        np.array([0, 1, None, 1], dtype=object),
        np.array([0, 1, 1]),
    ],
)
def test_missing_group_labels_rejected(groups):
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="groups"):
        group_metrics(y, y, groups)
    with pytest.raises(ValueError, match="groups"):
        group_weights(groups) if len(groups) == 4 else group_metrics(y, y, groups)


def test_group_weights_balance_groups():
    g = np.array([0, 0, 0, 1, 2, 2])
    w = group_weights(g)
    assert [w[g == k].sum() for k in (0, 1, 2)] == pytest.approx([2, 2, 2])


def _layers(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, n)
    noise = [rng.standard_normal((n, 8)) for _ in range(3)]
    early = noise[0].copy()
    early[:, 0] += 3 * (2 * label - 1)  # label written plainly at layer 0
    late = noise[2].copy()
    late[:, 0] += 3 * (2 * label - 1)
    return (
        label,
        {"l0": early, "l1": noise[1], "l2": late},
        {"l0": noise[0], "l1": noise[1], "l2": late},
    )


def test_early_decodability_flags_a_label_present_at_layer0_only():
    label, simple, deep = _layers()
    flagged = early_decodability(simple, label)
    assert flagged["shortcut/sieve_flag"] == 1.0 and flagged["shortcut/sieve_first_layer"] == 0.0
    assert flagged["shortcut/decodability/l0"] > 0.9 and flagged["shortcut/decodability/l1"] < 0.15
    late = early_decodability(deep, label)
    assert late["shortcut/sieve_flag"] == 0.0 and late["shortcut/sieve_first_layer"] == 2.0


def test_spurious_predictability_per_layer():
    label, simple, _ = _layers()
    out = spurious_predictability(simple, label)
    assert out["shortcut/spurious_predictability/l0"] > 0.95
    assert abs(out["shortcut/spurious_predictability/l1"] - 0.5) < 0.1


def test_opposing_signals_recovers_planted_pair():
    rng = np.random.default_rng(0)
    t, n = 40, 60
    steps = np.arange(t)[:, None]
    hist = 1.0 / (1 + 0.1 * steps) + 0.01 * rng.standard_normal((t, n))  # smooth decay
    swing = 0.5 * np.sin(steps[:, 0] * 1.3)
    a, b = np.arange(5), np.arange(5, 10)
    hist[:, a] += swing[:, None]
    hist[:, b] -= swing[:, None]
    tracker = LossTracker(n)
    for row in hist:
        tracker.record(row)
    groups = np.repeat(np.arange(6), 10)  # group 0 = a + b, others smooth
    groups[5:10] = 6
    det = OpposingSignals(top_k=10).fit(tracker.history, groups=groups)
    sides = {frozenset(det.side_a_.tolist()), frozenset(det.side_b_.tolist())}
    assert sides == {frozenset(a.tolist()), frozenset(b.tolist())}
    assert det.opposition_ > 0.95
    assert set(det.group_pair_) == {0, 6}
    assert det.to_metrics()["shortcut/opposition"] > 0.95
    with pytest.raises(NotFittedError):
        OpposingSignals().to_metrics()


def test_dfr_improves_worst_group_over_erm():
    # feature 0 = core (noisy), feature 1 = spurious; training set 95% spurious-aligned
    rng = np.random.default_rng(0)

    def sample(n, p_align):
        y = rng.integers(0, 2, n)
        a = np.where(rng.random(n) < p_align, y, 1 - y)
        x = np.stack([(2 * y - 1) + 0.8 * rng.standard_normal(n), 3 * (2 * a - 1)], 1)
        x = np.concatenate([x, rng.standard_normal((n, 3))], 1)
        return x, y, 2 * y + a

    from sklearn.linear_model import LogisticRegression

    xtr, ytr, gtr = sample(4000, 0.95)
    xte, yte, gte = sample(4000, 0.5)
    erm = LogisticRegression().fit(xtr, ytr)
    dfr = DFR(n_repeats=5).fit(xtr, ytr, gtr)
    worst_erm = group_metrics(yte, erm.predict(xte), gte)["shortcut/worst_group_acc"]
    worst_dfr = group_metrics(yte, dfr.predict(xte), gte)["shortcut/worst_group_acc"]
    assert worst_dfr > worst_erm + 0.2
    with pytest.raises(NotFittedError):
        DFR().predict(xte)
