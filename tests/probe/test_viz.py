import numpy as np
import pytest
from matplotlib.figure import Figure

from hiddenlens.probe import cka_matrix, sweep
from hiddenlens.viz.probe import plot_cka_matrix, plot_layer_curves, plot_mdl, plot_selectivity


def test_probe_figures_draw_from_results(planted):
    layers, y, _ = planted
    r = sweep(layers, y, cv=3, n_boot=20)
    fig = plot_layer_curves({"planted": r, "as dict": vars(r)}, chance=0.5)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.lines) >= 2 and len(ax.collections) == 2  # two CI bands
    np.testing.assert_allclose(ax.lines[0].get_ydata(), r.score)
    c = cka_matrix(layers)
    fig = plot_cka_matrix(c.matrix, c.rows, title="t")
    assert fig.axes[0].get_title() == "t" and len(fig.axes[0].texts) == 9
    assert isinstance(plot_selectivity(r.hook_points, {"x": r.score - 0.5}), Figure)
    assert isinstance(plot_mdl(r.hook_points, {"x": [1.0, 2.0, 3.0]}), Figure)
    with pytest.raises(ValueError, match="does not match"):
        plot_cka_matrix(np.eye(2), ["a"])
