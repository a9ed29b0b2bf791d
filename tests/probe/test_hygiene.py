import numpy as np
import pytest

from hiddenlens.probe import (
    block_ends,
    control_task,
    feature_complexity,
    mdl_probe,
    probe_with_control,
    selectivity,
)


def _typed_tokens(seed=0, n_types=40, reps=30, d=64):
    """Tokens of 40 word types; the task label is a property of the type."""
    rng = np.random.default_rng(seed)
    types = np.repeat(np.arange(n_types), reps)
    type_label = rng.integers(0, 2, n_types)
    y = type_label[types]
    # memorising view: a random embedding per type (d > n_types: any type -> label map is linear)
    emb = rng.normal(size=(n_types, d))
    memo = emb[types] + 0.05 * rng.normal(size=(len(types), d))
    # property view: only the label direction, no type identity
    prop = np.outer(2 * y - 1, rng.normal(size=d)) + rng.normal(size=(len(types), d))
    return {"memo": memo.astype(np.float32), "prop": prop.astype(np.float32)}, y, types


def test_control_task_is_a_function_of_type_with_label_marginal():
    rng = np.random.default_rng(0)
    types = rng.integers(0, 500, 20000)
    y = (rng.random(20000) < 0.3).astype(int)
    c = control_task(types, y, seed=1)
    for t in np.unique(types)[:50]:
        assert len(np.unique(c[types == t])) == 1
    per_type = np.array([c[types == t][0] for t in np.unique(types)])
    assert abs(per_type.mean() - 0.3) < 0.06
    with pytest.raises(ValueError, match="aligned"):
        control_task(types[:-1], y)


def test_memorising_probe_has_low_selectivity():
    layers, y, types = _typed_tokens()
    task, ctrl = probe_with_control(layers, y, types, cv=3, alpha=1e-4)
    sel = dict(zip(task.hook_points, task.selectivity(ctrl)))
    # the type embedding lets the probe memorise the control task as well as the task
    assert task.score[0] > 0.95 and ctrl.score[0] > 0.9
    assert sel["memo"] < 0.1
    # a representation of the property alone cannot fit random per-type labels
    assert sel["prop"] > 0.3
    assert selectivity(task, ctrl)["probe/accuracy_selectivity/memo"] == pytest.approx(sel["memo"])


def test_block_ends_follow_voita_titov():
    assert block_ends(10000) == [10, 20, 40, 80, 160, 320, 625, 1250, 2500, 5000, 10000]
    with pytest.raises(ValueError, match="increase strictly"):
        block_ends(100, (0.5, 0.2, 1.0))


def test_mdl_shorter_for_learnable_label_than_random(planted):
    layers, y, _ = planted
    learn = mdl_probe(layers, y, ["noise", "clean"], seed=0)
    rand = mdl_probe(layers, np.random.default_rng(1).permutation(y), ["noise", "clean"])
    n = len(y)
    assert learn.uniform_bits == pytest.approx(n)  # binary: 1 bit per row
    assert learn.codelength_bits[1] < 0.5 * rand.codelength_bits[1]
    assert learn.compression[1] > 2.0
    # random labels cannot be compressed (online code pays for overfitting: ratio <= ~1)
    assert rand.compression.max() < 1.1
    # the codelength is the sum of its blocks, the first sent uniformly
    np.testing.assert_allclose(learn.block_bits.sum(1), learn.codelength_bits)
    assert learn.block_bits[0, 0] == pytest.approx(learn.block_ends[0] * 1.0)
    assert "probe/mdl_compression/clean" in learn.to_metrics()


def test_complexity_simple_feature_lower_than_late_feature(planted):
    layers, y, _ = planted
    rng = np.random.default_rng(3)
    # early-decodable: present in every layer; late: present only in the last layer
    ordered = {"l0": layers["clean"], "l1": layers["clean"], "l2": layers["clean"]}
    simple = feature_complexity(ordered, y, cv=3)
    late = {"l0": layers["noise"], "l1": layers["noise"], "l2": layers["clean"]}
    complex_ = feature_complexity(late, y, cv=3)
    assert simple.complexity < 0.3 < complex_.complexity
    assert 0 <= complex_.decodability.min() and complex_.decodability.max() <= 1
    assert complex_.decodability[2] > complex_.decodability[0]
    reg = feature_complexity(ordered, layers["clean"] @ rng.normal(size=24), cv=3)
    assert reg.complexity < 0.05
