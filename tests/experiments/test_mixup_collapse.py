"""Mixup in the digits training code, and the experiment's seed aggregation."""

import numpy as np
import pytest

from experiments.collapse_digits.train import Recipe, load_data, train
from experiments.mixup_collapse.run import aggregate, analyse


def test_mixup_recipe_trains_and_is_analysed():
    data = tuple(a[:300] for a in load_data(0))  # every class is present in 300 rows
    res = train(Recipe("mixup", epochs=1, mixup_alpha=1.0, width=32, depth=2), data)
    assert 0 <= res.test_acc <= 1
    out = analyse(res, data[0], data[1], n_per=1, seed=0)
    m = out["geo"].to_metrics("mixup")
    assert 0 <= m["collapse/mixup_boundary_share/mixup"] <= 1
    assert out["proj"]["points"].shape[1] == 2 and out["proj"]["vertices"].shape == (3, 2)
    with pytest.raises(ValueError, match="mixup_alpha"):
        Recipe("bad", mixup_alpha=-1.0)


def test_aggregate_over_seeds():
    per = {
        "collapse/nc1/erm/seed=0": 1.0,
        "collapse/nc1/erm/seed=1": 3.0,
        "collapse/nc1/mixup/seed=0": 5.0,
    }
    out = aggregate(per, ["erm", "mixup"])
    assert out["collapse/nc1/erm"] == 2.0 and out["collapse/nc1_std/erm"] == 1.0
    assert out["collapse/nc1/mixup"] == 5.0 and np.isclose(out["collapse/nc1_std/mixup"], 0)


def test_verdict_follows_the_criterion():
    from experiments.mixup_collapse.run import verdict

    def metrics(bs, off):
        out = {}
        for run, b, o, c in (("erm", 0.15, 0.1, 0.99), ("mixup", bs, off, 0.85)):
            out[f"collapse/mixup_boundary_share/{run}"] = b
            out[f"collapse/mixup_line_dist/{run}"] = o
            out[f"collapse/mixup_same_class_cos/{run}"] = c
        return out

    assert verdict(metrics(0.58, 0.4)).startswith("Different-class mixes: reproduced")
    assert "not reproduced" in verdict(metrics(0.40, 0.4))  # below 1/3 + 0.1
    assert "not reproduced" in verdict(metrics(0.58, 0.15))  # still near the segment
    assert "classifier at least as well as ERM's features: no" in verdict(metrics(0.58, 0.4))
