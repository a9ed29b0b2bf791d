"""Mixup geometry: planted convex-combination and boundary-channel features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiddenlens.collapse import accumulate, simplex_etf
from hiddenlens.collapse.mixup import (
    mix_pairs,
    mixup_batch,
    mixup_geometry,
    plane_coordinates,
)


def _clean(k=4, d=6, n=20, seed=0):
    rng = np.random.default_rng(seed)
    means = 5 * simplex_etf(k, d, seed=seed)
    y = np.repeat(np.arange(k), n)
    return means, accumulate(means[y] + 0.01 * rng.standard_normal((k * n, d)), y)


def _mixes(k=4, n_lam=25):
    pairs = [(a, b) for a in range(k) for b in range(k)]
    lam = np.tile(np.linspace(0, 1, n_lam), len(pairs))
    ya = np.repeat([p[0] for p in pairs], n_lam)
    yb = np.repeat([p[1] for p in pairs], n_lam)
    return lam, ya, yb


def test_convex_combinations_sit_on_the_segment_at_lambda():
    means, stats = _clean()
    lam, ya, yb = _mixes()
    h = lam[:, None] * stats.means[ya] + (1 - lam[:, None]) * stats.means[yb]
    w = means  # classifier rows = class means (NC3), no bias
    geo = mixup_geometry(h, lam, ya, yb, stats, classifier=(w, np.zeros(4)))
    c = geo.cross
    np.testing.assert_allclose(geo.position[c], lam[c], atol=1e-9)
    np.testing.assert_allclose(geo.line_dist[c], 0, atol=1e-9)
    np.testing.assert_allclose(geo.gap[c], 2 * lam[c] - 1, atol=1e-9)  # g linear in h
    m = geo.to_metrics("pen")
    assert m["collapse/mixup_pos_err/pen"] < 1e-9 and m["collapse/mixup_pos_corr/pen"] > 0.999
    # λ = k/24: k = 5..19 lie in [0.2, 0.8], and |2λ − 1| < 0.2 for k = 10..14: 5 of 15
    assert m["collapse/mixup_boundary_share/pen"] == pytest.approx(1 / 3)
    assert np.isnan(geo.position[~c]).all() and np.isfinite(geo.same_cos[~c]).all()


def test_boundary_channel_features_are_recognised():
    # features of intermediate λ on the a/b decision boundary, spread along it (a channel),
    # at the class mean otherwise: off the line, t ≠ λ, g = 0
    means, stats = _clean()
    lam, ya, yb = _mixes()
    rng = np.random.default_rng(1)
    mid = 0.5 * (stats.means[ya] + stats.means[yb])
    along = rng.standard_normal((lam.size, 6))
    seg = stats.means[ya] - stats.means[yb]
    seg2 = np.maximum(np.einsum("nd,nd->n", seg, seg), 1e-12)  # same-class rows: seg = 0
    along -= (np.einsum("nd,nd->n", along, seg) / seg2)[:, None] * seg
    h = mid + along
    h[lam < 0.1] = stats.means[yb][lam < 0.1]
    h[lam > 0.9] = stats.means[ya][lam > 0.9]
    same = ya == yb
    h[same] = stats.means[ya][same]
    geo = mixup_geometry(h, lam, ya, yb, stats, classifier=stats.means)  # W = M (NC3)
    m = geo.to_metrics()
    assert m["collapse/mixup_boundary_share"] == 1.0
    assert m["collapse/mixup_line_dist"] > 0.05 and m["collapse/mixup_pos_err"] > 0.1
    # same-class mixes at their class mean: aligned with the classifier row (w = means)
    assert m["collapse/mixup_same_class_cos"] == pytest.approx(1.0, abs=1e-3)
    cur = geo.curve(5)
    assert cur["lam"].shape == (5,) and abs(cur["gap"][2]) < 1e-9


def test_mix_pairs_and_mixup_batch():
    x = torch.arange(12, dtype=torch.float32).reshape(6, 2)
    y = np.array([0, 0, 1, 1, 2, 2])
    xm, ya, yb, lam = mix_pairs(x, y, [(0, 2)], [0.0, 0.25, 1.0], n_per=4, seed=0)
    assert xm.shape == (12, 2) and set(ya) == {0} and set(yb) == {2}
    # λ = 1 is a pure class-0 row, λ = 0 a pure class-2 row
    assert all(r.tolist() in ([0.0, 1.0], [2.0, 3.0]) for r in xm[lam == 1])
    assert all(r.tolist() in ([8.0, 9.0], [10.0, 11.0]) for r in xm[lam == 0])
    xb, ys, lv = mixup_batch(x, torch.tensor(y), 3, alpha=0.4, rng=np.random.default_rng(0))
    assert 0 <= lv <= 1 and xb.shape == x.shape
    torch.testing.assert_close(ys.sum(1), torch.ones(6))
    # inputs and soft labels are the same convex combination: with x = 10·class id + c, the
    # expected class id under the soft label equals the mixed first coordinate's class part
    xc = torch.tensor(y, dtype=torch.float32)[:, None] * torch.ones(1, 2)
    xm2, ys2, lv2 = mixup_batch(xc, torch.tensor(y), 3, rng=np.random.default_rng(3))
    torch.testing.assert_close(ys2 @ torch.tensor([0.0, 1.0, 2.0]), xm2[:, 0])
    with pytest.raises(ValueError, match="alpha"):
        mixup_batch(x, torch.tensor(y), 3, alpha=0, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="class without examples"):
        mix_pairs(x, y, [(0, 5)], [0.5])


def test_plane_coordinates_and_bad_input():
    v = np.array([[0.0, 0, 0], [2, 0, 0], [0, 2, 0]])
    pts, verts = plane_coordinates(np.array([[1.0, 1, 5]]), v)
    np.testing.assert_allclose(np.abs(pts), [[1, 1]], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(verts, axis=1), [0, 2, 2], atol=1e-12)
    with pytest.raises(ValueError, match="collinear"):
        plane_coordinates(pts @ np.zeros((2, 3)), np.array([[0.0, 0, 0], [1, 0, 0], [2, 0, 0]]))
    _, stats = _clean()
    with pytest.raises(ValueError, match=r"classes \[7\] have no clean mean"):
        mixup_geometry(np.zeros((1, 6)), [0.5], [0], [7], stats)
    with pytest.raises(ValueError, match="rows"):
        mixup_geometry(np.zeros((2, 6)), [0.5], [0], [1], stats)


def test_plot_mixup_projection():
    from matplotlib.figure import Figure

    from hiddenlens.viz.collapse import plot_mixup_projection

    verts = np.array([[0.0, 0], [1, 0], [0.5, 0.8]])
    lam = np.linspace(0, 1, 5)
    pts = lam[:, None] * verts[0] + (1 - lam[:, None]) * verts[1]
    fig = plot_mixup_projection(
        {"points": pts, "lam": lam, "vertices": verts, "clean": verts}, title="t"
    )
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "t" and len(ax.collections) == 2  # clean + mixed scatters
    np.testing.assert_allclose(ax.collections[1].get_array(), lam)  # coloured by λ
    with pytest.raises(ValueError, match=r"vertices must be \[3, 2\]"):
        plot_mixup_projection({"points": pts, "lam": lam, "vertices": verts[:2]})
