"""Makelov et al.'s minimal latent-set search on a planted dictionary: exactly m latents
carry the attribute, so the output-ranked search needs exactly m; large-norm nuisance
latents that the readout ignores fool the distance ranking, which copies them first."""

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens.sae.principled import SpliceTask
from hiddenlens.sae.principled_search import EditSearchConfig, minimal_edit_search

D, N_NUIS = 8, 4


class PlantedDictionary:
    """decode(z) = z @ W: latents 0..m-1 each add e_0 / m (the attribute), latents
    m..m+3 add 3 e_1..3 e_4 (nuisance); encode is W's pseudo-inverse (exact codes)."""

    def __init__(self, m: int):
        w = np.zeros((m + N_NUIS, D), np.float32)
        w[:m, 0] = 1.0 / m
        for j in range(N_NUIS):
            w[m + j, 1 + j] = 3.0
        self.w = torch.as_tensor(w)
        self.pinv = torch.linalg.pinv(self.w)

    def encode(self, x, labels=None):
        return torch.as_tensor(x, dtype=torch.float32) @ self.pinv

    def decode(self, z):
        return torch.as_tensor(z, dtype=torch.float32) @ self.w


def _case(m: int, n: int = 40, seed: int = 0):
    """Items with a = 0 (no e_0) and counterfactuals with a = 1 (e_0 from all m latents);
    nuisance codes differ by >= 1. Readout: logit_0 = 1 - 0.5 / m, logit_1 = x . e_0, so
    the output follows a = 1 once, and only once, all m attribute latents are copied."""
    rng = np.random.default_rng(seed)
    nuis = rng.normal(size=(n, N_NUIS))
    off = rng.normal(scale=0.1, size=(n, D - 1 - N_NUIS))  # outside the dictionary: error term
    x = np.concatenate([np.zeros((n, 1)), 3 * nuis, off], 1).astype(np.float32)
    x_cf = x.copy()
    x_cf[:, 0] = 1.0
    x_cf[:, 1 : 1 + N_NUIS] += 3 * (1.0 + rng.random((n, N_NUIS)))
    model = nn.Sequential(nn.Linear(D, D), nn.Linear(D, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(D))
        model[0].bias.zero_()
        model[1].weight.zero_()
        model[1].weight[1, 0] = 1.0
        model[1].bias.copy_(torch.tensor([1.0 - 0.5 / m, 0.0]))
    labels = {"a": np.zeros(n, int)}
    task = SpliceTask(
        torch.as_tensor(x), "0", labels, lambda lg, lb: lg[:, 0], lambda lb: lb["a"], position=None
    )
    return PlantedDictionary(m), model, task, (x_cf, {"a": np.ones(n, int)})


@pytest.mark.parametrize("m", [1, 3])
def test_output_ranked_search_finds_exactly_the_m_attribute_latents(m):
    d, model, task, cf = _case(m)
    res = minimal_edit_search(d, model, task, cf, EditSearchConfig(max_latents=10))
    assert np.array_equal(res.sizes, np.full(40, m))
    assert all(sorted(o) == list(range(m)) for o in res.order)
    assert np.array_equal(res.n_candidates, np.full(40, m + N_NUIS))
    curve = res.success_curve()
    assert curve.shape == (11,)
    assert np.array_equal(curve, (np.arange(11) >= m).astype(float))
    assert res.min_latents() == m and res.success_full == 1.0
    row = res.summary()
    assert row["min_latents"] == m and row["mean_set_size"] == m and row["curve"][m] == 1.0
    metrics = res.to_metrics("blocks.0.hook_resid_post")
    assert metrics["sae/edit_search_min_latents/blocks.0.hook_resid_post"] == m
    assert metrics["sae/edit_search_mean_set_size/blocks.0.hook_resid_post"] == m


def test_distance_ranking_copies_the_large_nuisance_latents_first():
    m = 2
    d, model, task, cf = _case(m)
    res = minimal_edit_search(d, model, task, cf, EditSearchConfig(rank_by="distance"))
    assert np.array_equal(res.sizes, np.full(40, m + N_NUIS))
    assert all(set(o[:N_NUIS]) == set(range(m, m + N_NUIS)) for o in res.order)
    assert res.min_latents() == m + N_NUIS


def test_too_few_latents_and_custom_score():
    m = 3
    d, model, task, cf = _case(m)
    short = minimal_edit_search(d, model, task, cf, EditSearchConfig(max_latents=m - 1))
    assert (short.sizes == -1).all() and short.min_latents() is None
    assert short.success_curve()[-1] == 0.0 and short.success_full == 1.0
    # a score that already holds unedited: every item needs 0 latents
    res = minimal_edit_search(d, model, task, cf, score=lambda lg, idx: lg[:, 0] + 1.0)
    assert (res.sizes == 0).all() and res.min_latents() == 0


def test_bad_input_is_rejected():
    d, model, task, (x_cf, lab_cf) = _case(1)
    with pytest.raises(ValueError, match="one row per task item"):
        minimal_edit_search(d, model, task, (x_cf[:5], lab_cf))
    with pytest.raises(ValueError, match="rank_by"):
        EditSearchConfig(rank_by="random")
    with pytest.raises(ValueError, match="max_latents"):
        EditSearchConfig(max_latents=0)
    with pytest.raises(ValueError, match="threshold"):
        EditSearchConfig(threshold=1.5)
    no_answer = SpliceTask(task.inputs, "0", task.labels, task.metric, position=None)
    with pytest.raises(ValueError, match="task.answer or a score"):
        minimal_edit_search(d, model, no_answer, (x_cf, lab_cf))
    with pytest.raises(ValueError, match="answer does not change"):
        minimal_edit_search(d, model, task, (x_cf, task.labels))


def test_edit_success_figure_draws_each_curve_and_ceiling():
    from hiddenlens.viz.sae import plot_edit_success

    d, model, task, cf = _case(2)
    res = minimal_edit_search(d, model, task, cf, EditSearchConfig(max_latents=6))
    fig = plot_edit_success({"planted": res, "flat": np.zeros(7)})
    ax = fig.axes[0]
    step = ax.lines[0]
    assert np.array_equal(step.get_ydata(), res.success_curve())
    assert any(np.allclose(line.get_ydata(), 1.0) for line in ax.lines[1:])  # the ceiling
    with pytest.raises(ValueError, match="1-D"):
        plot_edit_success({"bad": np.zeros((2, 2))})
