"""Codebook figures build from plain arrays and show what they claim."""

import numpy as np
import pytest
from matplotlib.figure import Figure

from hiddenlens.viz.codebook import (
    plot_code_label_matrix,
    plot_code_usage,
    plot_code_vs_neuron,
    plot_losses,
)


def test_figures():
    fig = plot_code_usage(np.array([5, 0, 3, 0]))
    assert isinstance(fig, Figure) and "2 dead of 4" in fig.axes[0].get_title()
    codes, labels = np.array([1, 1, 2, 2, 3]), np.array([0, 0, 1, 1, 1])
    fig = plot_code_label_matrix(codes, labels=labels)
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (2, 3) and np.allclose(image.sum(0), 1.0)  # columns are shares
    assert isinstance(plot_code_vs_neuron({"a": (0.9, 0.4), "b": (0.5, 0.6)}), Figure)
    assert isinstance(plot_losses({"loss": [3.0, 2.0, 1.0]}), Figure)
    with pytest.raises(ValueError, match="differ in length"):
        plot_code_label_matrix(codes, labels=labels[:3])
