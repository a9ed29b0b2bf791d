"""Layer curves: a log axis with nothing positive to show falls back to a linear one."""

import io

import numpy as np

from hiddenlens.viz.layers import LayerCurves, plot_layer_curves


def test_exact_collapse_on_a_log_axis_still_draws():
    curves = LayerCurves(["a", "b"], {"nc1": [0.0, 0.0]}, logy=True)  # NC1 = 0: exact collapse
    fig = plot_layer_curves(curves)
    fig.savefig(io.BytesIO(), format="png")  # a log axis of only zeros raised here
    assert fig.axes[0].get_yscale() == "linear"
    mixed = plot_layer_curves(LayerCurves(["a", "b"], {"nc1": [0.0, 0.5]}, logy=True))
    assert mixed.axes[0].get_yscale() == "log"
    assert np.isnan(mixed.axes[0].lines[0].get_ydata()[0])  # the zero is dropped, as documented
