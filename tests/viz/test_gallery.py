"""Every ``plot_*`` in hiddenlens.viz renders on small data, with the one signature
``(data, *, ax=None, title=None)``, labelled axes, legends off the data area and a non-empty
PNG (issue 17's figure gallery)."""

from __future__ import annotations

import importlib
import inspect
import io
import pkgutil

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import hiddenlens.viz as viz
from hiddenlens.viz.layers import LayerCurves

R = np.random.default_rng(0)
L = ["encoder.layer.0", "encoder.layer.1", "encoder.layer.2"]
BAND = (np.array([0.1, 0.2]), np.array([0.0, 0.1]), np.array([0.2, 0.3]))
PLANE = {
    "epochs": [1, 10, 100],
    "layers": ["l0", "l1"],
    "ixt": R.random((3, 2)),
    "ity": R.random((3, 2)),
    "estimator": "binning",
}
FRONTIER = [
    {"l0": k, "fvu": 1 / k, "label": a, "name": f"{a}-{k}"}
    for a in ("topk", "relu")
    for k in (4, 16, 64)
]

SAMPLES = {
    "plot_percent_nonzero": ({"l0": 3.0, "l1": 6.3}, {}),
    "plot_layer_norms": ({"l0": 1.0, "l1": 2.0}, {}),
    "plot_layer_curves": (
        LayerCurves(
            L,
            {"a": [0.5, 0.7, 0.9], "a (control)": [0.5, 0.5, 0.6]},
            low={"a": [0.4, 0.6, 0.8]},
            high={"a": [0.6, 0.8, 1.0]},
            reference=0.5,
            reference_label="chance",
        ),
        {},
    ),
    "plot_layer_curves_interactive": ({"layers": L, "series": {"x": [1.0, 2.0, 3.0]}}, {}),
    "plot_cka_matrix": (np.eye(3), {"rows": L}),
    "plot_heatmap_interactive": (np.eye(3), {"rows": L, "diverging": True}),
    "plot_tree_distances": (
        (np.abs(np.subtract.outer(np.arange(4), np.arange(4))) ** 2, [-1, 0, 1, 1]),
        {"words": ["x", "=", "f", "("]},
    ),
    "plot_density_histogram": (np.r_[0.0, R.random(50) * 0.1], {}),
    "plot_density_histogram_interactive": (np.r_[0.0, R.random(50) * 0.1], {}),
    "plot_l0_fvu": (FRONTIER, {}),
    "plot_sae_frontier": (FRONTIER, {}),
    "plot_sae_frontier_interactive": ({"points": FRONTIER, "y": "fvu"}, {}),
    "plot_top_activations": ([{"activation": 2.0, "context": "a [[b]] c"}], {}),
    "plot_decoder_cosines": (R.normal(size=(6, 4)), {}),
    "plot_edit_success": ({"sae": [0.0, 0.3, 0.8, 0.9], "pca": [0.0, 0.1, 0.2, 0.4]}, {}),
    "plot_image_attributions": (
        {"grad": R.normal(size=(2, 6, 6))},
        {"images": R.random((2, 6, 6))},
    ),
    "plot_token_attributions": ([R.normal(size=3)], {"tokens": [["a", "b", "c"]]}),
    "plot_patching": ({"a": R.normal(size=3), "b": R.normal(size=3)}, {}),
    "plot_back_patching": (R.random((3, 3)), {"labels": ["a", "b", "c"]}),
    "plot_layer_scores": ({"l0": 0.1, "l1": -0.2}, {}),
    "plot_curves": ({"deletion": R.random(5)}, {"x": np.linspace(0, 1, 5)}),
    "plot_metric_by_k": ({"std": [0.1, 0.0]}, {"ks": [0.1, 0.2]}),
    "plot_images": (R.random((2, 6, 6)), {}),
    "plot_logit_lens": (np.array([[5, 3], [1, 0]]), {"labels": ["0", "final"]}),
    "plot_head_dla": (R.normal(size=(2, 4)), {}),
    "plot_distributions": ({"a": R.random(20), "b": R.random(20)}, {}),
    "plot_aggatt": (
        {"grad": R.random((3, 8, 8)), "gradcam": R.random((3, 8, 8))},
        {"bin_labels": ["0-2%", "2-50%", "50-100%"], "box": (0, 0, 4, 4)},
    ),
    "plot_layer_method_scores": (
        {"input": {"grad": 1.0, "gradcam": 0.3}, "final": {"grad": 0.9, "gradcam": 0.5}},
        {"chance": 0.25},
    ),
    "plot_recall_vs_noise": ({"saliency": [0.9, 0.6]}, {"levels": [5, 100], "chance": [0.5, 0.05]}),
    "plot_code_usage": (np.array([5, 3, 0, 1]), {}),
    "plot_code_label_matrix": (R.integers(0, 4, 50), {"labels": R.integers(0, 3, 50)}),
    "plot_code_vs_neuron": ({"digit": (0.9, 0.5), "upper": (0.6, 0.7)}, {}),
    "plot_losses": ({"task": np.exp(-np.arange(100) / 30) + R.random(100) * 0.1}, {}),
    "plot_nc_curves": ({"nc1": (np.arange(4), [1.0, 0.5, 0.2, 0.1])}, {}),
    "plot_cosine_matrix": (np.eye(3), {}),
    "plot_norms_vs_counts": ({"w": [1.0, 2.0]}, {"counts": [10, 20]}),
    "plot_mixup_projection": (
        {
            "points": R.random((8, 2)),
            "lam": np.linspace(0, 1, 8),
            "vertices": np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 0.9]]),
            "clean": R.random((5, 2)),
        },
        {},
    ),
    "plot_information_plane": (PLANE, {}),
    "plot_information_plane_interactive": (PLANE, {}),
    "plot_epoch_curves": (
        {"epochs": [1, 10, 100], "layers": ["l0", "l1"], "values": R.random((3, 2))},
        {},
    ),
    "plot_gap_vs_mi": ({"mi": [1.0, 2.0], "gap": [0.1, 0.2], "group": ["x", "y"]}, {}),
    "plot_bias_heatmap": (
        np.zeros((2, 3)),
        {"predictivity": [0.7, 0.9], "availability": [1, 2, 3]},
    ),
    "plot_bias_lines": ({"relu": BAND}, {"x": [1, 2]}),
    "plot_bias_over_training": ({"relu": BAND}, {"steps": [0, 10]}),
    "plot_group_accuracy": ({"erm": {"g0": 0.5, "g1": 0.9}}, {}),
    "plot_lens_comparison": (
        {"hooks": L, "ppl_logit": [90.0, 40.0, 20.0], "ppl_tuned": [50.0, 30.0, 20.0],
         "ppl_final": 20.0},
        {"metric": "perplexity"},
    ),
}


def _plot_functions():
    found = {}
    for mod in pkgutil.iter_modules(viz.__path__):
        module = importlib.import_module(f"hiddenlens.viz.{mod.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("plot_") and fn.__module__ == module.__name__:
                found[name] = fn
    return found


FUNCTIONS = _plot_functions()


def test_every_plot_function_has_a_gallery_sample():
    assert set(FUNCTIONS) == set(SAMPLES), set(FUNCTIONS) ^ set(SAMPLES)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_signature_is_data_then_keyword_ax_and_title(name):
    params = list(inspect.signature(FUNCTIONS[name]).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    assert len(positional) == 1 and positional[0].default is inspect.Parameter.empty, params
    keyword = {p.name: p for p in params if p.kind is p.KEYWORD_ONLY}
    assert keyword["ax"].default is None and keyword["title"].default is None


def _data_area_free_of_legends(fig: Figure) -> None:
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            box, data = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
            assert not box.overlaps(data), f"legend over the data of {ax.get_title()!r}"


def _labelled(ax) -> bool:
    if not ax.axison or ax.get_label() == "<colorbar>":
        return True
    if not ax.get_xticks().size and not ax.get_yticks().size:
        return True  # an image panel (no ticks): nothing to label
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel())


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_renders_labelled_with_legends_off_the_data(name):
    data, options = SAMPLES[name]
    fig = FUNCTIONS[name](data, title="gallery", **options)
    if not isinstance(fig, Figure):  # a plotly twin
        layout = fig.to_plotly_json()["layout"]
        assert layout["xaxis"]["title"]["text"] and layout["yaxis"]["title"]["text"]
        assert fig.data and fig.to_json()
        return
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    _data_area_free_of_legends(fig)
    unlabelled = [ax.get_title() for ax in fig.axes if not _labelled(ax)]
    assert not unlabelled, f"axes without x/y labels: {unlabelled}"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=60)
    img = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), dtype=float)
    assert buf.tell() > 1000 and img.std() > 1.0


def test_the_legend_check_catches_a_legend_on_the_data():
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from hiddenlens.viz.style import new_figure

    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1], label="x")
    ax.legend(loc="center")
    FigureCanvasAgg(fig).draw()
    with pytest.raises(AssertionError, match="legend over the data"):
        _data_area_free_of_legends(fig)


def test_short_names_stay_distinct():
    from hiddenlens.viz.style import short_names

    assert short_names(["encoder.layer.3", "encoder.layer.4"]) == ["layer.3", "layer.4"]
    names = ["transformer.h.0.mlp.act", "transformer.h.1.mlp.act"]
    assert len(set(short_names(names))) == 2  # 'mlp.act' twice would hide the layer
