"""Attribution figures build from plain arrays and return matplotlib Figures."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz import attribution as V


def test_figures_build():
    rng = np.random.default_rng(0)
    figs = [
        V.plot_image_attributions(
            rng.random((3, 16, 8)), {"grad": rng.standard_normal((3, 16, 8))}
        ),
        V.plot_token_attributions([["[CLS]", "hi", "[SEP]"]], [np.array([0.0, 0.5, -0.2])]),
        V.plot_patching(
            {"a": rng.standard_normal(4), "b": rng.standard_normal(4)}, position_labels=list("wxyz")
        ),
        V.plot_back_patching(np.where(np.tri(3, k=-1) > 0, 1.0, np.nan), ["l0", "l1", "l2"]),
        V.plot_layer_scores({"l0": 0.1, "l1": -0.2}),
        V.plot_curves(
            np.linspace(0, 1, 5), {"deletion": rng.random((2, 5)), "insertion": rng.random(5)}
        ),
        V.plot_metric_by_k([0.1, 0.2], {"standard": [0.1, 0.0], "robust": [0.3, 0.2]}),
        V.plot_images(rng.random((2, 8, 8)), titles=["a", "b"]),
        V.plot_logit_lens(np.array([[5, 3], [1, 0], [0, 0]]), ["0_pre", "1_pre", "final"]),
        V.plot_distributions({"a": rng.random(20), "b": rng.random(20)}, vline=0.5),
    ]
    assert all(isinstance(f, Figure) for f in figs)
