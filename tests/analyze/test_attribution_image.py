"""The attribution section's missingness bias for image models (Balasubramanian & Feizi 2023):
black / grey / neighbour / layer removal of the image border, on a CNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hiddenlens
from hiddenlens import metric_key
from hiddenlens.analyze.config import AttributionSectionConfig
from hiddenlens.analyze.sections.attribution_image import border_keep, layer_mask_hooks
from hiddenlens.attribution.masking import missingness_bias
from tests import _models


def test_cnn_missingness_metrics_on_constant_images(tmp_path):
    """On constant images the border's neighbours equal it, so neighbour fill removes
    nothing (|Δ logit| = 0 exactly) while black paint does; grey with the images' mean
    matches a direct call."""
    levels = torch.linspace(0.2, 1.0, 16)
    x = levels[:, None, None, None] * torch.ones(16, 1, 8, 8)
    raw = {"model": {"spec": _models.bn_cnn(), "batch_size": 8}, "data": {"source": {"x": x}},
           "cache": {"hooks": ["2", "6"]},
           "attribution": {"examples": 4, "n_steps": 4, "missingness_sizes": [1, 2, 9]}}
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    m = result.metrics

    def key(stat, where):
        return metric_key("attribution", f"missingness_{stat}", where)

    for k in (1, 2):
        assert m[key("dlogit", f"neighbour/border={k}")] < 1e-5
        assert m[key("kl", f"neighbour/border={k}")] < 1e-8
        assert m[key("dlogit", f"black/border={k}")] > 1e-3
        assert 0 <= m[key("flip_rate", f"grey/border={k}")] <= 1
    assert not any("border=9" in k for k in m)  # wider than an 8x8 image allows: left out
    model = _models.bn_cnn()
    ref = missingness_bias(model, x, border_keep(x.shape, 2), "grey", grey=float(x.mean()))
    assert m[key("dlogit", "grey/border=2")] == pytest.approx(float(ref.dlogit.mean()), rel=1e-6)
    # layer masking refills at both chosen maps: a direct call with both hooks, not one
    both = missingness_bias(model, x, border_keep(x.shape, 2), "layer",
                            hook_points={"2": "fill", "6": "fill"})
    one = missingness_bias(model, x, border_keep(x.shape, 2), "layer", hook_points={"2": "fill"})
    got = m[key("dlogit", "layer/border=2")]
    assert got == pytest.approx(float(both.dlogit.mean()), rel=1e-6)
    assert got != pytest.approx(float(one.dlogit.mean()), rel=1e-3)
    assert (tmp_path / "run" / "figures" / "missingness.png").exists()
    assert "filled again at 2 (fill), 6 (fill)" in result.report.read_text()


def test_layer_mask_hooks_match_the_experiments_choice():
    """The rule (mask the input of every spatial operation; masked mean before a global
    average pool) gives the hooks experiments/input_masking chose by hand."""
    from experiments.input_masking.run import VARIANTS, cnn

    x = torch.zeros(2, 1, 20, 20)
    assert layer_mask_hooks(cnn().eval(), x) == VARIANTS["layer"][1]
    assert layer_mask_hooks(_models.bn_cnn(), torch.zeros(2, 1, 8, 8)) == {
        "2": "fill", "6": "fill"}  # not "3", a max pool's output


def test_border_keep_and_config():
    keep = border_keep((3, 1, 6, 7), 2)
    assert keep.shape == (1, 1, 6, 7) and int(keep.sum()) == 2 * 3
    assert keep[0, 0, 2:4, 2:5].all()
    with pytest.raises(ValueError, match="border of 3 pixels"):
        border_keep((1, 1, 6, 6), 3)
    assert AttributionSectionConfig(missingness_sizes=[2, 1, 2]).missingness_sizes == [1, 2]
    for bad in ({"missingness_sizes": [0]}, {"missingness_sizes": 2}, {"back_patching_hooks": 1},
                {"missingness_grey": float("nan")}, {"back_patching_queries": -1}, {"dla_top": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            AttributionSectionConfig(**bad)


def _cnn_grid_raw(x, examples):
    """The BN CNN with conv hooks "1" and "2" for DiFull / AggAtt only (no missingness, no
    back-patching)."""
    return {"model": {"spec": _models.bn_cnn()}, "data": {"source": x},
            "cache": {"hooks": ["1", "2"]},
            "attribution": {"examples": examples, "n_steps": 4, "back_patching_queries": 0,
                            "missingness_sizes": []}}


def test_aggatt_bins_rank_the_difull_maps(tmp_path):
    """AggAtt in the attribution section: bins best first, their mean scores are the sorted
    DiFull scores averaged per bin, so they never rise from one bin to the next."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 8, 8, generator=g)
    result = hiddenlens.analyze(_cnn_grid_raw(x, 8), tmp_path / "run", progress=False)
    assert result.failed == []
    m = result.metrics
    for method in ("grad", "gradcam"):
        bins = [m[metric_key("attribution", f"aggatt_difull_{method}", f"bin={b}")]
                for b in ("0-25%", "25-50%", "50-75%", "75-100%")]
        assert all(a >= b - 1e-12 for a, b in zip(bins, bins[1:])), bins
        assert 0 <= bins[-1] <= bins[0] <= 1
    grad = [m[metric_key("attribution", "aggatt_difull_grad", f"bin={b}")]
            for b in ("0-25%", "25-50%", "50-75%", "75-100%")]
    assert grad == pytest.approx([1.0] * 4)  # gradients stay in the head's cell exactly
    assert "aggatt" in result.report.read_text()


def test_too_few_grids_for_aggatt_say_so(tmp_path):
    g = torch.Generator().manual_seed(4)  # the first 3 examples get 2 predicted classes
    x = torch.randn(32, 1, 8, 8, generator=g)
    result = hiddenlens.analyze(_cnn_grid_raw(x, 3), tmp_path / "run", progress=False)
    assert result.failed == []
    assert any(k.startswith("attribution/difull/") for k in result.metrics)  # DiFull ran
    assert not any("aggatt" in k for k in result.metrics)
    assert "AggAtt not drawn: 3 grids" in result.report.read_text()


def test_difull_on_one_predicted_class_says_which_condition_failed(tmp_path):
    """Identical images get one prediction: the note names the class, the count and the
    setting to raise, not a list of every condition DiFull has."""
    x = torch.ones(8, 1, 8, 8)
    result = hiddenlens.analyze(_cnn_grid_raw(x, 4), tmp_path / "run", progress=False)
    assert result.failed == []
    assert not any("difull" in k for k in result.metrics)
    pred = int(_models.bn_cnn()(x[:1]).argmax(1))
    assert (f"predicts one class ({pred}) for all 4 examples" in result.report.read_text())


def test_mlp_says_which_image_and_lm_parts_do_not_apply(tmp_path):
    """An MLP on vectors: no grid or mask (not images), no DLA or back-patching (no
    next-token prediction): each says why, none leaves a metric."""
    x = torch.randn(16, 8, generator=torch.Generator().manual_seed(0))
    raw = {"model": {"spec": _models.mlp()}, "data": {"source": x}, "cache": {"hooks": ["0"]},
           "attribution": {"examples": 4, "n_steps": 4}}
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    assert "attribution/grad_x_act_total/0" in result.metrics  # the section itself ran
    assert not any(s in k for k in result.metrics
                   for s in ("difull", "missingness", "dla_", "back_patching"))
    html = result.report.read_text()
    assert "DiFull and missingness bias not run" in html
    assert "Per-head DLA and back-patching not run" in html and "this module makes none" in html


class _Wrapped(nn.Module):
    """The BN CNN inside a custom module: the same network, not an nn.Sequential."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _models.bn_cnn()

    def forward(self, x):
        return self.net(x)


def test_a_cnn_that_is_not_sequential_says_why_not(tmp_path):
    """DiFull cuts an nn.Sequential into per-cell copies and layer masking hooks its
    children: a custom module gets both reasons, and the rest of the section still runs."""
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    raw = {"model": {"spec": _Wrapped().eval()}, "data": {"source": x},
           "cache": {"hooks": ["net.1", "net.2"]}, "attribution": {"examples": 4, "n_steps": 4}}
    result = hiddenlens.analyze(raw, tmp_path / "run", progress=False)
    assert result.failed == []
    assert "attribution/grad_x_act_total/net.2" in result.metrics
    assert not any("difull" in k or "missingness" in k for k in result.metrics)
    html = result.report.read_text()
    assert "DiFull not run: it needs an nn.Sequential image model" in html
    assert "Missingness bias not run: it needs an nn.Sequential image model" in html
