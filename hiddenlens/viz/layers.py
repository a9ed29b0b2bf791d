"""The per-layer profile: one metric across hook points, one line per series.

Probe accuracy with its bootstrap band (Hewitt & Liang 2019 selectivity, Voita & Titov 2020
MDL compression), neural-collapse NC1 by layer (Papyan, Han & Donoho 2020), Feature-Sieve
decodability and mutual information by layer all draw this chart, so it has one home:
:class:`LayerCurves` holds the numbers, :func:`plot_layer_curves` draws it in matplotlib and
:func:`plot_layer_curves_interactive` as its plotly twin. A series named ``"<name>
(control)"`` is drawn dashed in ``<name>``'s colour so task/control pairs read together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from hiddenlens.viz.style import PALETTE, PLOTLY_TEMPLATE, legend_outside, new_figure, short_names

CONTROL = " (control)"


@dataclass
class LayerCurves:
    """Values by layer: ``series[name][i]`` is the value at ``layers[i]``.

    low/high: optional band per series (e.g. a 95% CI); reference: a dotted level (chance,
    0, 1 — one for all or per series); logy: log y axis (non-positive values dropped).
    """

    layers: Sequence[str]
    series: Mapping[str, Sequence[float]]
    low: Mapping[str, Sequence[float]] = field(default_factory=dict)
    high: Mapping[str, Sequence[float]] = field(default_factory=dict)
    reference: float | Mapping[str, float] | None = None
    reference_label: str | None = None
    ylabel: str = "value"
    xlabel: str = "layer"
    logy: bool = False
    ylim: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.layers = [str(x) for x in self.layers]
        if not self.series:
            raise ValueError("LayerCurves needs at least one series")
        self.series = {str(k): np.asarray(v, dtype=float) for k, v in self.series.items()}
        for name, values in [*self.series.items(), *self.low.items(), *self.high.items()]:
            if len(values) != len(self.layers):
                raise ValueError(
                    f"series {name!r} has {len(values)} values for {len(self.layers)} layers"
                )

    @classmethod
    def from_results(cls, results: Mapping[str, Any], **options) -> LayerCurves:
        """From sweep-like results: name -> object/dict with hook_points, score, ci_low/high."""
        if not results:
            raise ValueError("LayerCurves.from_results needs at least one result")

        def get(r, key):
            return r[key] if isinstance(r, Mapping) else getattr(r, key)

        layers = list(get(next(iter(results.values())), "hook_points"))
        options.setdefault("ylabel", "held-out accuracy")
        return cls(
            layers,
            {n: get(r, "score") for n, r in results.items()},
            low={n: get(r, "ci_low") for n, r in results.items()},
            high={n: get(r, "ci_high") for n, r in results.items()},
            **options,
        )


def as_layer_curves(data: Any) -> LayerCurves:
    """Accept a LayerCurves, a dict of its fields, or a mapping name -> sweep-like result."""
    if isinstance(data, LayerCurves):
        return data
    if isinstance(data, Mapping) and "layers" in data and "series" in data:
        return LayerCurves(**data)
    if isinstance(data, Mapping) and data:
        return LayerCurves.from_results(data)
    raise TypeError(
        "plot_layer_curves takes a LayerCurves, a dict with 'layers' and 'series', or a "
        f"mapping name -> result with hook_points/score/ci_low/ci_high; got {type(data).__name__}"
    )


def _styles(names: Sequence[str]) -> dict[str, tuple[str, bool]]:
    """name -> (colour, is_control): a control series takes its task's colour."""
    bases = list(dict.fromkeys(n.removesuffix(CONTROL) for n in names))
    return {
        n: (PALETTE[bases.index(n.removesuffix(CONTROL)) % len(PALETTE)], n.endswith(CONTROL))
        for n in names
    }


def _drawable(c: LayerCurves) -> LayerCurves:
    """``c``, on a linear axis when a log axis would have nothing to show (every value <= 0,
    e.g. an exact neural collapse with NC1 = 0): matplotlib refuses such a log axis."""
    if c.logy and not any(np.any(np.asarray(v, float) > 0) for v in c.series.values()):
        return replace(c, logy=False)
    return c


def _values(c: LayerCurves, v) -> np.ndarray:
    v = np.asarray(v, dtype=float)
    return np.where(v > 0, v, np.nan) if c.logy else v


def plot_layer_curves(data, *, ax=None, title: str | None = None) -> Figure:
    """Draw :class:`LayerCurves` (see :func:`as_layer_curves` for accepted inputs)."""
    c = _drawable(as_layer_curves(data))
    fig, ax = new_figure(ax, figsize=(7.0, 3.8))
    x = np.arange(len(c.layers))
    for name, (color, control) in _styles(list(c.series)).items():
        ax.plot(
            x,
            _values(c, c.series[name]),
            marker="v" if control else "o",
            color=color,
            linestyle="--" if control else "-",
            alpha=0.7 if control else 1.0,
            label=name,
        )
        if name in c.low and name in c.high:
            ax.fill_between(
                x,
                _values(c, c.low[name]),
                _values(c, c.high[name]),
                color=color,
                alpha=0.2,
                linewidth=0,
            )
        level = c.reference.get(name) if isinstance(c.reference, Mapping) else None
        if level is not None:
            ax.axhline(level, color=color, linestyle=":", linewidth=1)
    if c.reference is not None and not isinstance(c.reference, Mapping):
        ax.axhline(c.reference, color="0.3", linestyle=":", linewidth=1, label=c.reference_label)
    ax.set_xticks(x, short_names(c.layers), rotation=30, ha="right")
    ax.set_xlabel(c.xlabel)
    ax.set_ylabel(c.ylabel)
    if c.logy:
        ax.set_yscale("log")
    if c.ylim is not None:
        ax.set_ylim(*c.ylim)
    legend_outside(ax)
    ax.set_title(title or f"{c.ylabel} by layer")
    return fig


def plot_layer_curves_interactive(data, *, ax=None, title: str | None = None):
    """The plotly twin of :func:`plot_layer_curves` (hover shows layer and value)."""
    import plotly.graph_objects as go

    if ax is not None:
        raise ValueError("plot_layer_curves_interactive draws a plotly figure; ax must be None")
    c = _drawable(as_layer_curves(data))
    fig = go.Figure()
    for name, (color, control) in _styles(list(c.series)).items():
        if name in c.low and name in c.high:
            fig.add_trace(
                go.Scatter(
                    x=c.layers + c.layers[::-1],
                    y=np.concatenate([c.high[name], np.asarray(c.low[name])[::-1]]),
                    fill="toself",
                    fillcolor=color,
                    opacity=0.2,
                    line={"width": 0},
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=name,
                )
            )
        fig.add_trace(
            go.Scatter(
                x=c.layers,
                y=_values(c, c.series[name]),
                mode="lines+markers",
                name=name,
                legendgroup=name,
                line={"color": color, "dash": "dash" if control else "solid"},
                hovertemplate=f"{name}<br>%{{x}}: %{{y:.4g}}<extra></extra>",
            )
        )
    if c.reference is not None and not isinstance(c.reference, Mapping):
        fig.add_hline(y=c.reference, line_dash="dot", line_color="#555555")
    fig.update_layout(
        template=PLOTLY_TEMPLATE,
        title=title or f"{c.ylabel} by layer",
        xaxis_title=c.xlabel,
        yaxis_title=c.ylabel,
        height=380,
        yaxis_type="log" if c.logy else None,
    )
    if c.ylim is not None:
        fig.update_yaxes(range=list(c.ylim))
    return fig
