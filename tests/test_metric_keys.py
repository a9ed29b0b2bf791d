"""Every analyzer's metrics use the one key grammar ``<analyzer>/<metric>[/<hook or split>]``.

Each producer runs on small planted data; every key it returns must parse with
``parse_key`` and name the producing analyzer, and pairs of hooks use ``~``.
"""

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens import parse_key

RNG = np.random.default_rng(0)
Y = np.repeat(np.arange(3), 40)
LAYERS = {
    "l0": RNG.standard_normal((120, 5)) + 3 * np.eye(3, 5)[Y],
    "l1": RNG.standard_normal((120, 4)),
}


def _check(metrics: dict, analyzer: str, n_min: int = 1) -> None:
    assert len(metrics) >= n_min
    for key, value in metrics.items():
        got, metric, where = parse_key(key)
        assert got == analyzer, key
        assert "|" not in key and metric
        assert isinstance(value, float), (key, type(value))


def test_sae_keys():
    from hiddenlens.sae import SAEConfig, build_sae, evaluate
    from tests.sae.fakes import FakeStore

    x = RNG.standard_normal((200, 6)).astype(np.float32)
    sae = build_sae(SAEConfig(d_in=6, d_sae=8, architecture="topk", k=2), seed=0).eval()
    m = evaluate(sae, FakeStore({"blocks.0.hook_resid_post": x}), "blocks.0.hook_resid_post")
    _check(m, "sae", 10)
    assert "sae/fvu/blocks.0.hook_resid_post" in m


def test_probe_keys():
    from hiddenlens.probe import cka_matrix, feature_complexity, mdl_probe, probe_with_control
    from hiddenlens.probe import selectivity as sel

    task, ctrl = probe_with_control(LAYERS, Y, np.arange(120) % 7, cv=2, n_boot=5)
    _check(task.to_metrics(), "probe", 7)
    assert {"probe/accuracy/l0", "probe/accuracy_ci_low/l0", "probe/accuracy_ci_high/l1"} <= set(
        task.to_metrics()
    )
    _check(sel(task, ctrl), "probe", 2)
    _check(mdl_probe(LAYERS, Y, seed=0).to_metrics(), "probe", 5)
    _check(feature_complexity(LAYERS, Y, cv=2).to_metrics(), "probe", 3)
    cka = cka_matrix(LAYERS).to_metrics()
    _check(cka, "probe", 4)
    assert "probe/cka/l0~l1" in cka


def test_collapse_keys():
    from hiddenlens.collapse import accumulate, imbalance_metrics, layer_metrics, metrics

    _check(metrics(LAYERS["l0"], Y), "collapse", 8)
    _check(metrics(LAYERS["l0"], Y, name="l0"), "collapse", 8)
    stats = {h: accumulate(x, Y) for h, x in LAYERS.items()}
    per_layer = layer_metrics(stats)
    _check(per_layer, "collapse", 10)
    assert "collapse/var_ratio/l1" in per_layer
    _check(imbalance_metrics(stats["l0"]), "collapse", 5)


def test_info_keys():
    from hiddenlens.info import local_rank, mutual_information

    x = RNG.integers(0, 4, 300)
    est = mutual_information(x, (x + RNG.integers(0, 2, 300)) % 4, bootstrap=5, seed=0)
    m = est.to_metrics("l0")
    _check(m, "info", 4)
    assert {"info/binning_bits/l0", "info/binning_bits_ci_low/l0"} <= set(m)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    _check(local_rank(net, torch.randn(5, 3), ["0", "2"]), "info", 2)


def test_info_plane_keys():
    from hiddenlens.info.plane import PlaneHistory

    h = PlaneHistory(layers=["l0", "l1"])
    for epoch in (0, 1):
        for layer in ("l0", "l1"):
            h.records.append(
                {"epoch": epoch, "layer": layer, "estimator": "binning", "ixt": 2.0, "ity": 1.0}
            )
    _check(h.to_metrics("binning"), "info", 6)


def test_shortcut_keys():
    from hiddenlens.shortcut import (
        OpposingSignals,
        TwoFeatureConfig,
        bias_from_predictions,
        early_decodability,
        group_metrics,
        make_dataset,
        spurious_predictability,
    )

    ds = make_dataset(TwoFeatureConfig(), 200, 100, seed=0)
    dec = {s: ds.splits[s].y for s in ds.splits}
    _check(bias_from_predictions(ds, dec), "shortcut", 6)
    g = np.arange(120) % 3
    _check(group_metrics(Y, Y, g), "shortcut", 7)
    _check(spurious_predictability(LAYERS, Y, max_rows=120), "shortcut", 3)
    _check(early_decodability(LAYERS, Y, max_rows=120), "shortcut", 7)
    losses = RNG.standard_normal((6, 50)).cumsum(0)
    _check(OpposingSignals(top_k=5).fit(losses).to_metrics(), "shortcut", 3)


def test_attribution_keys():
    from hiddenlens.attribution import diffroar
    from hiddenlens.attribution.evaluation import PerturbationCurves

    curves = PerturbationCurves(np.linspace(0, 1, 5), np.ones((2, 5)), np.zeros((2, 5)))
    _check(curves.to_metrics(), "attribution", 2)
    x = RNG.standard_normal((40, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    m = diffroar((x, y, x, y), (None, np.abs(x)), fractions=(0.5,), predict=lambda t: y)
    _check(m, "attribution", 3)
    assert "attribution/diffroar/k=0.50" in m


def test_codebook_keys():
    from hiddenlens.codebook.search import compare_with_neurons
    from hiddenlens.codebook.stats import all_layer_stats, layer_stats

    codes = RNG.integers(0, 8, (100, 2))
    _check(layer_stats(codes, 8), "codebook", 5)
    _check(all_layer_stats({"h": codes}, 8), "codebook", 5)
    mask = codes[:, 0] == 3
    acts = RNG.standard_normal((100, 4)) + mask[:, None]
    _check(compare_with_neurons(codes, acts, mask, 8, name="is_three"), "codebook", 6)


@pytest.mark.parametrize("bad", ["nc1", "sae_fvu/h", "probe_x_ci_low/h", "cka/a|b", "demo/x"])
def test_old_grammars_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_key(bad)
