"""Missingness bias of input masking for image models, run by
:mod:`hiddenlens.analyze.sections.attribution`.

Balasubramanian & Feizi, "Towards Improved Input Masking for Convolutional Neural Networks"
(ICCV 2023): removing pixels by painting them black or grey shows the network a pattern it
never saw, so the prediction moves even where the removed pixels carry no evidence; layer
masking (neighbour fill at the input and again at every layer) moves it less. Here the outer
``k`` pixels of each image (a border, blank on centred-object data such as digits) are removed
by each method of :data:`hiddenlens.attribution.masking.MASKINGS` and the shift of the clean
prediction is measured (:func:`hiddenlens.attribution.masking.missingness_bias`). Layer masking
is applied at the input of every spatial operation of an ``nn.Sequential`` (a convolution, a
pooling, the flatten before the head) unless that input is itself a pooling's output; a map that feeds a global average pool is set to the
mean of its kept positions there, so the pool averages over kept positions only (the paper's
masked pooling).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d,
            nn.Flatten, nn.Linear)


def _mixes_positions(module: nn.Module) -> bool:
    """True when ``module`` combines spatial positions (masking before it matters)."""
    return any(isinstance(m, _SPATIAL) for m in module.modules())


def _feeds_global_pool(module: nn.Module) -> bool:
    first = next((m for m in module.modules() if isinstance(m, _SPATIAL)), None)
    return isinstance(first, nn.AdaptiveAvgPool2d)


_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def layer_mask_hooks(model: nn.Sequential, x: torch.Tensor) -> dict[str, str]:
    """{child name: "fill" or "mean"}: the children of ``model`` whose output is a spatial
    map (4-D, larger than 1x1) that the next child mixes spatially, except pooling outputs
    (their input was masked already, and the mask itself is max-pooled to their size); "mean"
    where the next child starts with a global average pool. x: [n, C, H, W] (one forward pass
    of x[:1] finds the maps)."""
    from hiddenlens.attribution.layer import capture_activations

    children = list(model.named_children())
    names = [n for n, _ in children[:-1]]
    acts = capture_activations(model, x[:1], names) if names else {}
    out = {}
    for (name, mod), (_, nxt) in zip(children[:-1], children[1:]):
        act = acts[name]
        spatial = act.ndim == 4 and act.shape[-2] * act.shape[-1] > 1
        if spatial and not isinstance(mod, _POOLS) and _mixes_positions(nxt):
            out[name] = "mean" if _feeds_global_pool(nxt) else "fill"
    return out


def border_keep(shape: tuple[int, ...], k: int) -> torch.Tensor:
    """[1, 1, H, W] keep mask that removes the outer ``k`` pixels (0 = removed)."""
    h, w = shape[-2:]
    if not 1 <= k < min(h, w) / 2:
        raise ValueError(f"a border of {k} pixels leaves nothing of a {h}x{w} image; accepted: 1..{(min(h, w) - 1) // 2}")
    keep = torch.zeros(1, 1, h, w)
    keep[..., k: h - k, k: w - k] = 1
    return keep


def _why_not(model, x) -> str | None:
    if not isinstance(model, nn.Sequential) or not isinstance(x, torch.Tensor) or x.ndim != 4:
        return "it needs an nn.Sequential image model on [N, C, H, W] inputs"
    with torch.no_grad():
        out = model(x[:2])
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] < 2:
        return "it needs class logits [N, classes] as the model's output"
    return None


def run_missingness(ctx, cfg, sec, x: torch.Tensor) -> tuple[dict[str, float], str]:
    """The missingness-bias figure and ``attribution/missingness_*/<method>/border=<k>``
    metrics for every removed border width of ``cfg.missingness_sizes``; and a note."""
    from hiddenlens.attribution.masking import MASKINGS, missingness_bias
    from hiddenlens.viz.attribution import plot_metric_by_k

    model = ctx.handle.model
    why = _why_not(model, x)
    if why:
        return {}, f"Missingness bias not run: {why}."
    sizes = [k for k in cfg.missingness_sizes if k < min(x.shape[-2:]) / 2]
    if not sizes:
        return {}, f"Missingness bias not run: no border width in {cfg.missingness_sizes} fits the images."
    hooks = layer_mask_hooks(model, x)
    grey = float(x.mean()) if cfg.missingness_grey is None else cfg.missingness_grey
    methods = [m for m in MASKINGS if m != "layer" or hooks]
    metrics, curves = {}, {m: [] for m in methods}
    for k in sizes:
        keep = border_keep(x.shape, k)
        for method in methods:
            res = missingness_bias(model, x, keep, method, grey=grey,
                                   hook_points=hooks if method == "layer" else ())
            metrics |= res.to_metrics(f"{method}/border={k}")
            curves[method].append(float(res.dlogit.mean()))
    fig = plot_metric_by_k(curves, ks=sizes, ylabel="mean |Δ logit| of the clean class",
                           xlabel="removed border width (pixels)")
    fig.axes[0].set_xticks(sizes)  # whole pixels
    sec.add_figure(fig, "missingness", caption="prediction shift when the image border is removed by "
                   "each masking (missingness bias where the border is blank)")
    at = ", ".join(f"{h} ({m})" for h, m in hooks.items()) or "none"
    worst = max(methods, key=lambda m: np.mean(curves[m]))
    note = (f"Missingness bias on {len(x)} examples, border widths {sizes}: black = 0, grey = "
            f"{grey:.3g}, neighbour = filled from kept pixels, layer = filled again at {at}. It "
            f"is bias only where the border holds no evidence; the largest shift is {worst}'s.")
    return metrics, note
