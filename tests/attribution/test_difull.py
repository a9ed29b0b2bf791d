"""DiFull / GridPG grids, ML-Att layer maps and AggAtt: planted answers and exact properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hiddenlens.attribution as A
from hiddenlens.attribution.aggatt import AGGATT_BINS, aggatt
from hiddenlens.attribution.difull import (
    DisconnectedGrid,
    GridScores,
    make_grid_images,
    split_cells,
    stitch_cells,
)
from hiddenlens.attribution.evaluation import grid_cell_fractions
from hiddenlens.attribution.mlatt import layer_attribution_maps, upsample_maps


def _stages_head(n_classes: int = 5):
    torch.manual_seed(0)
    stages = [
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()),
    ]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, n_classes))
    return stages, head


def test_split_and_stitch_are_inverse_and_row_major():
    x = torch.randn(3, 2, 8, 12)
    cells = split_cells(x, (2, 3))
    assert cells.shape == (18, 2, 4, 4)
    assert torch.equal(cells[1], x[0, :, :4, 4:8]) and torch.equal(cells[5], x[0, :, 4:, 8:])
    assert torch.equal(cells[6], x[1, :, :4, :4])
    assert torch.equal(stitch_cells(cells, (2, 3)), x)
    with pytest.raises(ValueError, match="does not split into a 3x3"):
        split_cells(x, (3, 3))


def test_disconnected_grid_heads_see_only_their_cell():
    stages, head = _stages_head()
    single = nn.Sequential(*stages, head)
    model = DisconnectedGrid(stages, head, (2, 2))
    x = torch.randn(2, 1, 16, 16)
    out = model(x).reshape(2, 4, 5)
    # head k equals the single-image network run on cell k
    for k, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        cell = x[:, :, 8 * r : 8 * r + 8, 8 * c : 8 * c + 8]
        assert torch.allclose(out[:, k], single(cell), atol=1e-6)
    # changing every other cell leaves head 3 unchanged exactly
    x2 = x.clone()
    x2[:, :, :8] = torch.randn(2, 1, 8, 16)
    x2[:, :, 8:, :8] = 5.0
    assert torch.equal(model(x2).reshape(2, 4, 5)[:, 3], out[:, 3])
    idx = model.target_index([3, 0], [1, 4], n_classes=5)
    assert idx.tolist() == [16, 4]
    with pytest.raises(ValueError, match="cell indices must be in 0..3"):
        model.target_index(4, [0], n_classes=5)


def test_cell_fractions_planted():
    mask = np.zeros((2, 8, 8))
    mask[0, 4:, :4] = 1.0  # cell 2 of a 2x2 grid
    mask[1] = 1.0  # uniform: a quarter in each cell
    s = grid_cell_fractions(mask, (2, 2), [2, 1])
    assert np.allclose(s, [1.0, 0.25])
    neg = -np.ones((1, 8, 8))
    assert np.isnan(grid_cell_fractions(neg, (2, 2), 0)[0])  # no positive mass


def test_difull_backprop_methods_are_exact_and_gradcam_is_not():
    """Gradients of head k vanish outside cell k, so every backprop method scores exactly 1 at
    every layer of the DiFull model; Grad-CAM pools the gradient over the whole map and weights
    activations the head never saw, so its score falls below 1 (the paper's DiFull finding)."""
    stages, head = _stages_head()
    model = DisconnectedGrid(stages, head, (2, 2))
    x = torch.rand(4, 1, 16, 16)
    cells = np.array([0, 3, 1, 2])
    target = model.target_index(cells, [0, 1, 2, 3], n_classes=5)
    for hook in ("stages.0:input", "stages.0", "stages.2"):
        maps = layer_attribution_maps(model, x, hook, target=target, ig_steps=8)
        for method in ("grad", "ixg", "ig", "layercam"):
            s = grid_cell_fractions(maps[method], (2, 2), cells)
            assert np.all(np.isnan(s) | np.isclose(s, 1.0)), (hook, method, s)
        if hook == "stages.2":
            assert np.nanmean(grid_cell_fractions(maps["gradcam"], (2, 2), cells)) < 0.99
    occ = A.occlusion(model, x, window=(1, 4, 4), strides=(1, 4, 4), target=target).attributions
    s = grid_cell_fractions(occ, (2, 2), cells)
    assert np.all(np.isnan(s) | np.isclose(s, 1.0))
    # the same network on the whole grid (GridPG) has gradient outside the cell
    connected = nn.Sequential(*stages, head)
    g = layer_attribution_maps(connected, x, "0:input", target=[0, 1, 2, 3], methods=["grad"])
    assert np.nanmean(grid_cell_fractions(g["grad"], (2, 2), cells)) < 0.9


def test_layer_maps_match_input_methods_and_gradcam_formula():
    stages, head = _stages_head()
    model = DisconnectedGrid(stages, head, (2, 2))
    x = torch.rand(3, 1, 16, 16)
    t = [2, 7, 19]
    maps = layer_attribution_maps(model, x, "stages.0:input", target=t, ig_steps=16)
    sal = A.saliency(model, x, target=t).attributions.sum(1)
    ixg = A.input_x_gradient(model, x, target=t).attributions.sum(1)
    ig = A.integrated_gradients(model, x, target=t, n_steps=16).attributions.sum(1)
    assert torch.allclose(maps["grad"], sal, atol=1e-6)
    assert torch.allclose(maps["ixg"], ixg, atol=1e-6)
    assert torch.allclose(maps["ig"], ig, atol=1e-5)
    # Grad-CAM at stage 1 by hand: activation kept as a leaf, rest of the net run from it
    a = model.stages[1](model.stages[0](x)).detach().requires_grad_(True)
    logits = model.head(split_cells(model.stages[2](a), (2, 2))).reshape(3, -1)
    (g,) = torch.autograd.grad(logits[torch.arange(3), t].sum(), a)
    want = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1))
    got = layer_attribution_maps(model, x, "stages.1", target=t, methods=["gradcam"])["gradcam"]
    assert got.shape == (3, 8, 8) and torch.allclose(got, want.detach(), atol=1e-6)
    with pytest.raises(ValueError, match="accepted"):
        layer_attribution_maps(model, x, "stages.1", target=t, methods=["cam"])


def test_upsampling_a_cell_aligned_map():
    m = torch.zeros(1, 4, 4)
    m[0, :2, 2:] = 1.0
    near = upsample_maps(m, (16, 16), mode="nearest")
    assert near.shape == (1, 16, 16) and grid_cell_fractions(near, (2, 2), 1)[0] == 1.0
    bil = upsample_maps(m, (16, 16))
    assert 0.8 < grid_cell_fractions(bil, (2, 2), 1)[0] < 1.0  # bilinear leaks at the border


def test_grid_images_hold_distinct_classes():
    rng = np.random.default_rng(0)
    imgs = rng.random((40, 6, 6)).astype(np.float32)
    labels = np.arange(40) % 5
    g = make_grid_images(imgs, labels, n=7, grid=(2, 2), seed=1)
    assert g.x.shape == (7, 1, 12, 12) and g.labels.shape == (7, 4)
    assert all(len(set(row)) == 4 for row in g.labels)
    assert np.array_equal(labels[g.source], g.labels)
    assert np.allclose(g.x[3, 0, 6:, :6].numpy(), imgs[g.source[3, 2]])
    with pytest.raises(ValueError, match="needs >= 9 distinct classes"):
        make_grid_images(imgs, labels, n=2, grid=(3, 3))


def test_aggatt_bins_hold_their_mean_score():
    rng = np.random.default_rng(0)
    n = 100
    maps = rng.random((n, 8, 8)) * rng.random((n, 1, 1))
    maps[:, :4, :4] *= rng.random((n, 1, 1)) * 8  # varying mass in cell 0
    maps[5] = -1.0  # no positive mass: NaN score, ranked last
    scores = grid_cell_fractions(maps, (2, 2), 0)
    agg = aggatt(maps, scores)
    assert agg.counts.tolist() == [2, 3, 45, 45, 3, 2]
    assert np.all(np.diff(agg.scores) <= 1e-12)  # best bin first
    inside = agg.maps[:, :4, :4].sum((1, 2))
    assert np.allclose(inside, agg.scores)  # normalised maps: mass in the cell = mean score
    assert np.allclose(agg.maps.sum((1, 2))[:-1], 1.0)  # each map sums to 1 (last bin has the 0)
    assert agg.labels()[0] == "0-2%"
    assert set(agg.to_metrics()) == {f"attribution/aggatt_score/bin={b}" for b in agg.labels()}
    assert AGGATT_BINS[2] == 0.05
    with pytest.raises(ValueError, match="is empty with 20 maps"):
        aggatt(maps[:20], scores[:20])


def test_grid_scores_metrics():
    gs = GridScores("difull", {"stages.2": {"gradcam": np.array([0.5, np.nan, 1.0])}})
    assert gs.to_metrics() == {"attribution/difull/stages.2/gradcam": 0.75}


def test_from_sequential_cuts_a_flatten_linear_cnn():
    torch.manual_seed(0)
    cnn = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10),
    ).eval()
    model = DisconnectedGrid.from_sequential(cnn, ["3", "5"], (1, 2)).eval()
    x = torch.randn(2, 1, 8, 16)
    out = model(x).reshape(2, 2, 10)
    assert torch.allclose(out[:, 1], cnn(x[..., 8:]), atol=1e-5)
    maps = layer_attribution_maps(model, x, "stages.0", target=model.target_index(1, [3, 4], 10))
    assert maps["grad"].shape == (2, 4, 8)
    assert np.allclose(grid_cell_fractions(maps["ixg"], (1, 2), 1), 1.0)
    with pytest.raises(ValueError, match="leave at least one child for the head"):
        DisconnectedGrid.from_sequential(cnn, ["3", "7"])
    with pytest.raises(ValueError, match="must name children"):
        DisconnectedGrid.from_sequential(cnn, ["conv"])
