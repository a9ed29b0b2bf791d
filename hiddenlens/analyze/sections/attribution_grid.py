"""DiFull, ML-Att and AggAtt for image models, run by :mod:`hiddenlens.analyze.sections.attribution`.

Rao, Böhle & Schiele, "Better Understanding Differences in Attribution Methods via Systematic
Evaluations" (2022). The examples are tiled into grids; an ``nn.Sequential`` model is cut into
one disconnected copy per cell (:class:`~hiddenlens.attribution.DisconnectedGrid`), so the head
of a cell can only see that cell. DiFull scores each method's positive attribution mass inside
the cell of the explained head, at the input and at each cached conv hook (ML-Att: the same
methods compared at the same layer). AggAtt then ranks every input map of a method by that
score, averages the maps per percentile bin and shows the bins best first, so the figure is the
method's behaviour over the dataset rather than one chosen example.
"""

from __future__ import annotations

import numpy as np
import torch

#: AggAtt bins when there are too few maps for the paper's (0-2 % needs >= 50 maps)
FEW_MAPS_BINS = (0.0, 0.25, 0.5, 0.75, 1.0)


def _setup(model, x, hooks):
    """(conv hooks before the head, predictions, n_outputs) or a reason DiFull does not apply."""
    from torch import nn

    from hiddenlens.attribution.layer import capture_activations

    children = [n for n, _ in model.named_children()] if isinstance(model, nn.Sequential) else []
    ends = [h for h in hooks if h in children[:-1]]
    if not ends or not isinstance(x, torch.Tensor) or x.ndim != 4:
        return "it needs an nn.Sequential image model with cached hooks among its children"
    acts = capture_activations(model, x, ends)
    ends = [h for h in ends if acts[h].ndim == 4]
    with torch.no_grad():
        out = model(x)
    pred = out.argmax(1).numpy()
    if not ends:
        return "it needs a cached conv-map hook ([batch, channels, h, w]) before the head"
    if len(np.unique(pred)) < 2:
        return (f"the model predicts one class ({int(pred[0])}) for all {len(x)} examples, and a "
                "grid needs >= 2 predicted classes (raise attribution.examples)")
    return ends, pred, int(out.shape[1])


def _aggatt_figure(sec, maps: dict, grid, cell_shape) -> dict[str, float]:
    """AggAtt of the input maps of cell 0's head, one row per method; metrics per bin."""
    from hiddenlens.attribution import AGGATT_BINS, aggatt, grid_cell_fractions
    from hiddenlens.viz.attribution_eval import plot_aggatt

    n = len(next(iter(maps.values())))
    bins = AGGATT_BINS if n >= 50 else FEW_MAPS_BINS
    if n < len(bins) - 1:
        sec.add_text(f"AggAtt not drawn: {n} grids are fewer than its {len(bins) - 1} bins "
                     "(raise attribution.examples).")
        return {}
    binned = {m: aggatt(a, grid_cell_fractions(a, grid, 0), bins=bins) for m, a in maps.items()}
    first = next(iter(binned.values()))
    sec.add_figure(
        plot_aggatt({m: b.maps for m, b in binned.items()}, bin_labels=first.labels(),
                    box=(0, 0, *cell_shape), scores={m: b.scores for m, b in binned.items()},
                    title="AggAtt: input maps of the top-left head, by DiFull percentile"),
        "aggatt", caption=f"mean normalised positive input map per percentile bin of the "
        f"DiFull score (best first; {n} grids; white box: the cell the head sees)")
    out = {}
    for m, b in binned.items():
        out |= b.to_metrics(f"aggatt_difull_{m}")
    return out


def run_difull(ctx, cfg, sec, x, hooks) -> tuple[dict[str, float], str | None]:
    """DiFull per layer and method on grids of the examples, then AggAtt of the input maps;
    backprop methods reach 1 by construction, Grad-CAM need not."""
    from hiddenlens.attribution import (
        DisconnectedGrid,
        GridScores,
        grid_cell_fractions,
        layer_attribution_maps,
        make_grid_images,
    )
    from hiddenlens.viz.attribution_eval import plot_layer_method_scores

    model = ctx.handle.model
    found = _setup(model, x, hooks)
    if isinstance(found, str):
        return {}, found
    ends, pred, n_out = found
    grid = (2, 2) if len(np.unique(pred)) >= 4 else (1, 2)
    difull = DisconnectedGrid.from_sequential(model, ends, grid).eval()
    grids = make_grid_images(x, pred, n=len(x), grid=grid, seed=ctx.seed)
    layers = {"input": "stages.0:input", **{h: f"stages.{i}" for i, h in enumerate(ends)}}
    scores: dict[str, dict[str, list]] = {la: {} for la in layers}
    cell0: dict[str, np.ndarray] = {}
    for cell in range(difull.n_cells):
        t = difull.target_index(cell, grids.labels[:, cell], n_classes=n_out)
        for la, hook in layers.items():
            maps = layer_attribution_maps(difull, grids.x, hook, target=t,
                                          ig_steps=max(4, cfg.n_steps // 4))
            for m, a in maps.items():
                scores[la].setdefault(m, []).append(grid_cell_fractions(a, grid, cell))
                if cell == 0 and la == "input":
                    cell0[m] = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
    gs = GridScores("difull", {la: {m: np.concatenate(v) for m, v in by.items()}
                               for la, by in scores.items()})
    sec.add_figure(plot_layer_method_scores(gs.mean(), ylabel="DiFull score", chance=1 / difull.n_cells),
                   "difull", caption=f"DiFull on {len(grids)} {grid[0]}x{grid[1]} grids of the "
                   "examples: share of positive attribution in the cell the explained head sees "
                   "(grad / ixg / ig / layercam are 1 by construction; Grad-CAM pools gradients "
                   "over the whole map and can point at cells the head never saw)")
    cell_shape = (x.shape[-2], x.shape[-1])  # each grid cell is one example
    return gs.to_metrics() | _aggatt_figure(sec, cell0, grid, cell_shape), None
