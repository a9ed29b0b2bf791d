"""Code search, best-neuron baseline, code statistics and the TokFSM generator."""

import numpy as np
import pytest

import hiddenlens.codebook as hc
from hiddenlens.codebook.fsm import TokFSM


def test_search_codes_precision_recall_closed_form():
    codes = np.array([[0, 1], [0, 2], [1, 2], [3, 1], [0, 3]])
    mask = np.array([True, True, False, False, True])
    matches = hc.search_codes(codes, mask, n_codes=5, top=5)
    by_code = {m.code: m for m in matches}
    assert set(by_code) == {0, 1, 2, 3}  # code 4 never fires
    assert by_code[0].precision == 1.0 and by_code[0].recall == 1.0 and by_code[0].f1 == 1.0
    assert by_code[1].precision == pytest.approx(1 / 3) and by_code[1].recall == pytest.approx(
        1 / 3
    )
    assert by_code[2].n_fired == 2 and by_code[2].n_hits == 1
    assert matches[0].code == 0
    with pytest.raises(ValueError, match="no row"):
        hc.search_codes(codes, np.zeros(5, bool), 5)
    with pytest.raises(ValueError, match="mask"):
        hc.search_codes(codes, np.ones(4, bool), 5)


def _brute_best_f1(values, target):
    best = 0.0
    for sign in (1, -1):
        v = sign * values
        for t in np.unique(v):
            pred = v >= t
            tp = (pred & target).sum()
            best = max(best, 2 * tp / (pred.sum() + target.sum()))
    return best


def test_best_neuron_f1_matches_brute_force_and_finds_planted_neuron():
    rng = np.random.default_rng(0)
    acts = rng.normal(size=(80, 4)).round(1)  # rounding creates ties
    target = rng.random(80) < 0.3
    acts[:, 2] = np.where(target, -1.0, 1.0) + 0.1 * rng.normal(size=80)  # fires negatively
    res = hc.best_neuron_f1(acts, target)
    assert res["f1"][0] == pytest.approx(1.0) and res["neuron"][0] == 2 and res["sign"][0] == -1
    for j in (0, 1, 3):
        single = hc.best_neuron_f1(acts[:, j : j + 1], target)["f1"][0]
        assert single == pytest.approx(_brute_best_f1(acts[:, j], target))
    multi = hc.best_neuron_f1(acts, np.stack([target, ~target], 1))
    assert multi["f1"].shape == (2,)
    cmp = hc.compare_with_neurons(np.where(target, 1, 0)[:, None], acts, target, 2, name="x")
    assert cmp["codebook/code_f1/x"] == 1.0 and cmp["codebook/neuron_f1/x"] == pytest.approx(1.0)


def test_masks_and_best_code_per_label():
    assert hc.regex_mask(["The", "cat", "42", "Ab"], r"^[A-Z]").tolist() == [
        True,
        False,
        False,
        True,
    ]
    assert hc.token_set_mask(np.array([5, 6, 7]), {6, 7}).tolist() == [False, True, True]
    labels = np.array([0, 0, 1, 1, 2])
    codes = np.array([3, 3, 1, 1, 0])[:, None]
    best = hc.best_code_f1(codes, labels, 4)
    assert best["code"].tolist() == [3, 1, 0] and best["f1"].tolist() == [1.0, 1.0, 1.0]


def test_layer_stats_and_purity_closed_form():
    uniform = np.arange(8).repeat(3)[:, None]
    stats = hc.layer_stats(uniform, 8, name="h")
    assert stats["codebook/code_perplexity/h"] == pytest.approx(8.0)
    assert stats["codebook/dead_fraction/h"] == 0.0
    half = hc.layer_stats(np.array([[0], [1]]), 4)
    assert half["codebook/code_entropy"] == pytest.approx(np.log(2)) and half["codebook/n_dead"] == 2.0
    labels = np.array([0, 0, 1, 1])
    assert hc.purity_nmi(np.array([5, 5, 7, 7]), labels) == pytest.approx(
        {"purity": 1.0, "nmi": 1.0, "n_clusters_used": 2.0}
    )
    mixed = hc.purity_nmi(np.array([5, 7, 5, 7]), labels)
    assert mixed["purity"] == 0.5 and mixed["nmi"] == pytest.approx(0.0, abs=1e-12)
    table = hc.per_code_table(np.array([[0], [0], [1], [0]]), 3, labels=np.array([4, 4, 4, 9]))
    assert table["usage"].tolist() == [3, 1, 0]
    assert table["purity"][0] == pytest.approx(2 / 3) and np.isnan(table["purity"][2])
    assert table["majority"][:2].tolist() == [4, 4]
    with pytest.raises(ValueError, match="code ids"):
        hc.code_usage(np.array([[3]]), 3)


def test_tokfsm_sequences_follow_transitions():
    fsm = TokFSM(n_states=100, n_successors=10, seed=0)
    assert fsm.transitions_.shape == (100, 10)
    assert all(len(set(row)) == 10 for row in fsm.transitions_.tolist())
    tokens, states = fsm.sample(8, 20, seed=1)
    assert tokens.shape == (8, 40) and tokens.max() <= 9
    assert (tokens[:, 0::2] * 10 + tokens[:, 1::2] == states).all()
    for s, nxt in zip(states[:, :-1].ravel(), states[:, 1:].ravel()):
        assert nxt in fsm.transitions_[s]
    valid = fsm.valid_next(tokens, states)
    # Every true next token is allowed by the FSM.
    assert np.take_along_axis(valid[:, :-1], tokens[:, 1:, None], -1).all()
    assert valid[:, 1::2].sum(-1).max() <= 10
    with pytest.raises(ValueError):
        TokFSM(n_states=101)
