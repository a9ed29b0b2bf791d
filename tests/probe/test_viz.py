import numpy as np
import pytest
from matplotlib.figure import Figure

from hiddenlens.probe import cka_matrix, sweep
from hiddenlens.viz.probe import LayerCurves, plot_cka_matrix, plot_layer_curves


def test_probe_figures_draw_from_results(planted):
    layers, y, _ = planted
    r = sweep(layers, y, cv=3, n_boot=20)
    fig = plot_layer_curves(LayerCurves.from_results({"planted": r, "as dict": vars(r)}, reference=0.5))
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert len(ax.lines) >= 2 and len(ax.collections) == 2  # two CI bands
    np.testing.assert_allclose(ax.lines[0].get_ydata(), r.score)
    c = cka_matrix(layers)
    fig = plot_cka_matrix(c.matrix, rows=c.rows, title="t")
    assert fig.axes[0].get_title() == "t" and len(fig.axes[0].texts) == 9
    fig = plot_layer_curves({"layers": r.hook_points, "series": {"x": [1, 2, 3], "x (control)": [1, 1, 1]}})
    solid, dashed = fig.axes[0].lines[:2]
    assert solid.get_color() == dashed.get_color() and dashed.get_linestyle() == "--"
    with pytest.raises(ValueError, match="does not match"):
        plot_cka_matrix(np.eye(2), rows=["a"])
