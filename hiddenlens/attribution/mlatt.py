"""ML-Att: attribution methods evaluated at the same layer, as spatial maps.

Rao, Böhle & Schiele, "Better Understanding Differences in Attribution Methods via Systematic
Evaluations" (2022): methods differ in *where* they explain a network (Grad-CAM at the last conv
layer, gradients at the input), so they are compared fairly only at the same layer. Every method
here treats the activation at ``hook_point`` (a [batch, C, h, w] map; ``<module>:input`` for the
image itself) as the input of the rest of the network and returns a [batch, h, w] map, summed
over channels as in the paper's code:

- ``grad``: sum_c |dF/dA_c| (Simonyan et al. 2014; Captum ``Saliency``);
- ``ixg``: sum_c A_c dF/dA_c (Shrikumar et al. 2016);
- ``ig``: layer integrated gradients from a zero activation (Sundararajan et al. 2017);
- ``gradcam``: ReLU(sum_c mean_hw(dF/dA_c) A_c) (Selvaraju et al. 2017), gradients pooled over
  the whole map;
- ``layercam``: ReLU(sum_c ReLU(dF/dA_c) A_c) (Jiang et al. 2021).

``upsample_maps`` brings maps of a coarse layer to the image size (bilinear, as the paper) for
display and aggregation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from hiddenlens.attribution._core import Inputs, Target

__all__ = ["LAYER_METHODS", "layer_attribution_maps", "upsample_maps"]

LAYER_METHODS = ("grad", "ixg", "ig", "gradcam", "layercam")


def _check_methods(methods: Sequence[str]) -> list[str]:
    methods = [methods] if isinstance(methods, str) else list(methods)
    bad = [m for m in methods if m not in LAYER_METHODS]
    if bad or not methods:
        raise ValueError(f"unknown layer method(s) {bad or methods}; accepted: {LAYER_METHODS}")
    return methods


def _maps_from_gradient(act: Tensor, grad: Tensor, method: str) -> Tensor:
    """[B, h, w] map of one gradient method from the activation and its gradient [B, C, h, w]."""
    if method == "grad":
        return grad.abs().sum(1)
    if method == "ixg":
        return (act * grad).sum(1)
    if method == "gradcam":
        return torch.relu((grad.mean(dim=(2, 3), keepdim=True) * act).sum(1))
    return torch.relu((torch.relu(grad) * act).sum(1))  # layercam


def layer_attribution_maps(
    model,
    inputs: Inputs,
    hook_point: str,
    *,
    target: Target = None,
    methods: Sequence[str] = LAYER_METHODS,
    ig_steps: int = 20,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Tensor]:
    """{method: [batch, h, w] map} at one hook point whose activation is [batch, C, h, w].

    One forward and backward pass serves grad / ixg / gradcam / layercam; ``ig`` adds
    ``ig_steps`` batched steps (``layer_integrated_gradients``, zero baseline).
    """
    from hiddenlens.attribution.layer import layer_gradient_x_activation, layer_integrated_gradients

    methods = _check_methods(methods)
    out: dict[str, Tensor] = {}
    grad_methods = [m for m in methods if m != "ig"]
    if grad_methods:
        found = layer_gradient_x_activation(
            model, inputs, hook_point, target=target, forward_kwargs=forward_kwargs
        )
        if len(found) != 1:
            raise ValueError(f"layer maps take one hook point; {hook_point!r} -> {list(found)}")
        (res,) = found.values()
        grad = res.info["gradient"]
        if grad.ndim != 4:
            raise ValueError(
                f"layer maps need a [batch, C, h, w] activation at {hook_point!r}, got shape "
                f"{tuple(grad.shape)}"
            )
        act = res.info["activation"]
        for m in grad_methods:
            out[m] = _maps_from_gradient(act, grad, m).detach()
    if "ig" in methods:
        ig = layer_integrated_gradients(
            model,
            inputs,
            hook_point,
            target=target,
            n_steps=ig_steps,
            forward_kwargs=forward_kwargs,
        ).attributions
        if ig.ndim != 4:
            raise ValueError(
                f"layer maps need a [batch, C, h, w] activation at {hook_point!r}, got shape "
                f"{tuple(ig.shape)}"
            )
        out["ig"] = ig.sum(1).detach()
    return {m: out[m] for m in methods}


def upsample_maps(maps: Tensor, size: Sequence[int], *, mode: str = "bilinear") -> Tensor:
    """[N, h, w] (or [N, C, h, w], channels summed) -> [N, H, W] (``mode``: bilinear / nearest)."""
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode={mode!r}; accepted: 'bilinear', 'nearest'")
    m = torch.as_tensor(maps)
    if m.ndim == 4:
        m = m.sum(1)
    if m.ndim != 3:
        raise ValueError(f"maps must be [N, h, w] or [N, C, h, w], got shape {tuple(m.shape)}")
    kw = {"align_corners": False} if mode == "bilinear" else {}
    up = torch.nn.functional.interpolate(m[:, None].float(), size=tuple(size), mode=mode, **kw)
    return up[:, 0]
