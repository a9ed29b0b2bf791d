"""Collapse figures build on plain arrays and reuse a given axes."""

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.collapse import (
    LayerCurves,
    plot_cosine_matrix,
    plot_layer_curves,
    plot_nc_curves,
    plot_norms_vs_counts,
)


def test_figures_build():
    x = np.arange(5)
    fig = plot_nc_curves({"a": (x, [1, 0.5, 0.1, 0.0, 0.01])}, markers={"zero": 2, "none": None})
    assert isinstance(fig, Figure) and fig.axes[0].get_yscale() == "log"
    fig = plot_layer_curves(LayerCurves(["l0", "l1"], {"nc1": [1.0, 0.2]}, logy=True))
    assert fig.axes[0].get_yscale() == "log"
    fig = plot_cosine_matrix(np.eye(3), labels=["a", "b", "c"], title="t")
    assert fig.axes[0].get_title() == "t"
    fig = plot_norms_vs_counts({"w": [1, 2, 3]}, counts=[10, 20, 30], labels=["a", "b", "c"])
    assert len(fig.axes[0].collections) == 1


def test_reuses_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert plot_nc_curves({"a": ([0, 1], [1, 2])}, ax=ax, logy=False) is fig
