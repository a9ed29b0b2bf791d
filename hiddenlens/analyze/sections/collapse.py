"""Section: neural-collapse geometry per layer for each label (Papyan, Han & Donoho 2020):
NC1-NC4 and CDNV streamed from the store with float64 class accumulators; next to it an
unconstrained-features-model run (Zhu et al. 2021) shows what exact collapse looks like, and
for a classifier the features of mixed inputs are placed against the class means and the head
(Fisher et al. 2024; :mod:`~hiddenlens.analyze.sections.collapse_mixup`).
A model never trained on a label is measured for how far each layer clusters it, not for
a terminal-phase collapse."""

from __future__ import annotations

import warnings

import numpy as np

USES_SAE = False


def _chunks(store, hook, labels, n, chunk=8192):
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        yield store.rows(hook, start, stop), labels[start:stop]


def _get(per_layer: dict, metric: str, hook: str) -> float:
    """A per-layer value whether or not the key already carries the ``collapse/`` prefix."""
    key = f"{metric}/{hook}"
    return per_layer[key] if key in per_layer else per_layer[f"collapse/{key}"]


def _rename(per_layer: dict, label: str | None) -> dict:
    """``collapse/<metric>[_<label>]/<hook>`` keys (the label only when several are run)."""
    out = {}
    for key, v in per_layer.items():
        metric, _, hook = key.removeprefix("collapse/").partition("/")
        metric = f"{metric}_{label}" if label else metric
        out[f"collapse/{metric}/{hook}" if hook else f"collapse/{metric}"] = v
    return out


def _one_label(ctx, cfg, sec, name: str, y: np.ndarray, hooks: list[str], tag: bool) -> dict:
    from hiddenlens.collapse import SigmaBWarning, accumulate, layer_metrics
    from hiddenlens.viz.collapse import LayerCurves, plot_layer_curves

    n = min(len(y), cfg.max_rows or len(y))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SigmaBWarning)
        if n == len(y):  # stream straight from the store, chunk by chunk
            stats = {h: accumulate((ctx.store, h), y, chunk_rows=8192) for h in hooks}
        else:
            stats = {h: accumulate(_chunks(ctx.store, h, y, n)) for h in hooks}
        per_layer = layer_metrics(stats, order=hooks)
    nc1 = [_get(per_layer, "nc1", h) for h in hooks]
    best = hooks[int(np.nanargmin(nc1))]
    warn = f" {len(caught)} Σ_B conditioning warning(s) were raised; see CDNV." if caught else ""
    names = ctx.labels.names.get(name)
    first = stats[hooks[0]]
    sec.add_text(
        f"Label {name!r}: {len(first.classes)} classes over {n:,} rows per layer. NC1 = "
        "Tr(Σ_W Σ_B⁺)/C, CDNV = mean over class pairs of (σ²_c + σ²_c′)/(2‖μ_c − μ_c′‖²); "
        f"lower means tighter clusters relative to their separation. NC1 runs from "
        f"{nc1[0]:.3g} ({hooks[0]}) to {nc1[-1]:.3g} ({hooks[-1]}); lowest at {best}.{warn}"
    )
    sec.add_table(
        [{"class": names[int(c)] if names else int(c), "rows": int(k)}
         for c, k in zip(first.classes, first.counts)],
        caption=f"Class sizes of {name} (NC1 averages Σ_W over rows)",
    )
    series = {k: [_get(per_layer, k, h) for h in hooks] for k in ("nc1", "cdnv", "within_over_between")}
    sec.add_figure(
        plot_layer_curves(LayerCurves(hooks, series, ylabel="value", logy=True),
                          title=f"{name}: collapse by layer"),
        f"collapse_layers_{name}",
    )
    return _rename(per_layer, name if tag else None)


def _ufm(cfg, n_classes: int, sec) -> dict:
    from hiddenlens.collapse import UFMConfig, simulate_ufm
    from hiddenlens.viz.collapse import plot_nc_curves

    steps = cfg.ufm_steps
    ufm = simulate_ufm(UFMConfig(n_classes=n_classes, d=16, n_per_class=10, steps=steps,
                                 log_every=max(1, steps // 40)))
    first, last = ufm.history[0][1], ufm.history[-1][1]
    sec.add_text(
        f"Unconstrained-features model ({n_classes} classes, d = 16, cross-entropy, weight "
        f"decay, plain gradient descent): NC1 {first['nc1']:.3g} → {last['nc1']:.2g}, distance "
        f"of class means to a simplex ETF {first['means_etf_dist']:.3g} → "
        f"{last['means_etf_dist']:.2g}, NC3 {first['nc3']:.3g} → {last['nc3']:.2g} — the exact "
        "collapse that real networks only approach."
    )
    curves = {k: ufm.curve(k) for k in ("nc1", "means_etf_dist", "classifier_etf_dist", "nc3")}
    sec.add_figure(plot_nc_curves(curves, xlabel="gradient step", ylabel="value",
                                  title="UFM: exact collapse"), "collapse_ufm")
    return {f"collapse/ufm_{k}": last[k] for k in ("nc1", "means_etf_dist", "nc3")}


def run(ctx, cfg, report) -> None:
    vals = ctx.labels.values
    default = ["token_kind"] if "token_kind" in vals else list(ctx.cfg.data.labels)
    names = ctx.labels.pick(cfg.labels, default)
    if not names:
        raise ValueError("collapse needs a label: set [collapse] labels or [data] labels")
    hooks = ctx.hooks_for(cfg.hooks)
    sec = report.add_section("Neural collapse")
    metrics: dict = {}
    n_classes = 2
    why_not: dict[str, str] = {}  # label -> why its mixed inputs were not measured
    for name in names:
        metrics |= _one_label(ctx, cfg, sec, name, vals[name], hooks, len(names) > 1)
        n_classes = max(n_classes, len(np.unique(vals[name])))
        if cfg.mixup_classes and not any("mixup" in k for k in metrics):
            from hiddenlens.analyze.sections.collapse_mixup import run_mixup

            m, why = run_mixup(ctx, cfg, sec, name, vals[name])
            metrics |= m
            if why:
                why_not[name] = why
    if why_not and not any("mixup" in k for k in metrics):
        whys = "; ".join(f"{n!r}: {w}" for n, w in why_not.items()) if len(why_not) > 1 \
            else next(iter(why_not.values()))
        sec.add_text(f"Mixed-input geometry (Fisher et al. 2024) not measured: {whys}.")
    if cfg.ufm_steps:
        metrics |= _ufm(cfg, min(n_classes, 10), sec)
    sec.add_metrics(metrics)
