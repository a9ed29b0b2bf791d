"""Attribution figures build from plain arrays and return matplotlib Figures."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from hiddenlens.viz import attribution as V


def test_figures_build():
    rng = np.random.default_rng(0)
    figs = [
        V.plot_image_attributions(
            {"grad": rng.standard_normal((3, 16, 8))}, images=rng.random((3, 16, 8))
        ),
        V.plot_token_attributions([np.array([0.0, 0.5, -0.2])], tokens=[["[CLS]", "hi", "[SEP]"]]),
        V.plot_patching(
            {"a": rng.standard_normal(4), "b": rng.standard_normal(4)}, position_labels=list("wxyz")
        ),
        V.plot_back_patching(np.where(np.tri(3, k=-1) > 0, 1.0, np.nan), labels=["l0", "l1", "l2"]),
        V.plot_layer_scores({"l0": 0.1, "l1": -0.2}),
        V.plot_curves(
            {"deletion": rng.random((2, 5)), "insertion": rng.random(5)}, x=np.linspace(0, 1, 5)
        ),
        V.plot_metric_by_k({"standard": [0.1, 0.0], "robust": [0.3, 0.2]}, ks=[0.1, 0.2]),
        V.plot_images(rng.random((2, 8, 8)), titles=["a", "b"]),
        V.plot_logit_lens(np.array([[5, 3], [1, 0], [0, 0]]), labels=["0_pre", "1_pre", "final"]),
        V.plot_distributions({"a": rng.random(20), "b": rng.random(20)}, vline=0.5),
    ]
    assert all(isinstance(f, Figure) for f in figs)


def test_token_map_wraps_long_texts_and_picks_readable_text_colours():
    tokens = [[f"word{i}" for i in range(60)]]
    scores = [np.linspace(-1, 1, 60)]
    fig = V.plot_token_attributions(scores, tokens=tokens)
    texts = fig.axes[0].texts
    assert len({round(t.get_position()[1], 4) for t in texts}) > 1  # wrapped onto lines
    assert max(t.get_position()[0] for t in texts) < 0.97  # nothing starts past the edge
    # the strongest cells are dark (deep red / deep blue): white text; the middle is light
    assert texts[0].get_color() == "white" and texts[-1].get_color() == "white"
    assert texts[30].get_color() == "black"


def test_layer_score_notes_name_a_bar():
    fig = V.plot_layer_scores({"l0": 1.0, "l1": 0.0}, notes={"l1": "0 by construction"})
    assert any("by construction" in t.get_text() for t in fig.axes[0].texts)
    with pytest.raises(ValueError, match="not one of the bars"):
        V.plot_layer_scores({"l0": 1.0}, notes={"l9": "x"})


def test_attribution_evaluation_figures_build():
    from hiddenlens.viz.attribution_eval import (
        plot_aggatt,
        plot_layer_method_scores,
        plot_recall_vs_noise,
    )

    rng = np.random.default_rng(0)
    labels = ["0-2%", "2-50%", "50-100%"]
    maps = {"grad": rng.random((3, 8, 8)), "gradcam": rng.random((3, 8, 8))}
    figs = [
        plot_aggatt(maps, bin_labels=labels, box=(0, 0, 4, 4), scores={k: [1, 0.5, 0.2] for k in maps}),
        plot_layer_method_scores({"input": {"grad": 1.0, "gradcam": 0.4}, "final": {"grad": 0.9}},
                                 chance=0.25),
        plot_recall_vs_noise({"saliency": [1.0, 0.5]}, levels=[10, 100], chance=[0.3, 0.05]),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    with pytest.raises(ValueError, match="has 3 bin maps but 2 bin labels"):
        plot_aggatt(maps, bin_labels=labels[:2])
    with pytest.raises(ValueError, match="has 1 values for 2 levels"):
        plot_recall_vs_noise({"saliency": [1.0]}, levels=[10, 100])
