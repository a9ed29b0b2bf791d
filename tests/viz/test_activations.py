import pytest

from hiddenlens.viz.activations import plot_layer_norms, plot_percent_nonzero


def test_percent_nonzero_bars_and_labels():
    fig = plot_percent_nonzero({"l0": 3.0, "l1": 6.3})
    ax = fig.axes[0]
    assert [p.get_height() for p in ax.patches] == [3.0, 6.3]
    assert "%" in ax.get_ylabel() and ax.get_xlabel() == "layer"
    with pytest.raises(TypeError, match="mapping layer name -> value"):
        plot_percent_nonzero([1.0])


def test_layer_norms_trace():
    fig = plot_layer_norms({"a": 1, "b": 2, "c": 3})
    assert list(fig.data[0].y) == [1, 2, 3] and fig.layout.yaxis.title.text.startswith("mean")
