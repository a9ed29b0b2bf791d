"""Perturbation attribution: occlusion and feature ablation (no gradients needed).

- Occlusion (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks", 2014):
  slide a window over the input, replace it by a baseline, and credit every covered feature
  with F(x) - F(x_occluded), averaged over the windows that cover it. Window placement and
  averaging follow Captum's ``Occlusion`` so results are identical.
- Feature ablation: each group of ``feature_mask`` (same id = removed together) is replaced by
  the baseline; every member gets F(x) - F(x_ablated) (Captum's ``FeatureAblation``).

Many perturbed copies go through the model in one batch (``perturbations_per_eval``). With
``layer_mask_hooks`` the removal is *layer masking* ("Towards Improved Input Masking for
Convolutional Neural Networks", Balasubramanian & Feizi, 2023): the mask is applied at the
input and at every listed layer, holes filled from their neighbours, instead of painting grey
pixels that the network sees as a new pattern (missingness bias).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from hiddenlens.attribution._core import (
    Attribution,
    Target,
    check_baseline,
    repeat_target,
    run_model,
    select_target,
)
from hiddenlens.attribution.gradient import repeat_kwargs

__all__ = ["occlusion", "feature_ablation", "occlusion_masks"]


def occlusion_masks(shape: Sequence[int], window: Sequence[int], strides: Sequence[int]) -> Tensor:
    """[n_windows, *shape] bool masks of every window position (Captum's placement)."""
    if len(window) != len(shape) or len(strides) != len(shape):
        raise ValueError(
            f"sliding window {tuple(window)} and strides {tuple(strides)} must have one entry per "
            f"input dimension {tuple(shape)} (batch excluded)"
        )
    for d, w, s in zip(shape, window, strides):
        if not 1 <= w <= d:
            raise ValueError(f"window {tuple(window)} does not fit the input {tuple(shape)}")
        if s < 1 or (s > w and w < d):
            raise ValueError(f"stride {s} must be in 1..{w} (the window size)")
    starts = [
        [k * s for k in range(math.ceil((d - w) / s) + 1)]
        for d, w, s in zip(shape, window, strides)
    ]
    masks = []
    for corner in itertools.product(*starts):
        m = torch.zeros(tuple(shape), dtype=torch.bool)
        m[tuple(slice(c, min(c + w, d)) for c, w, d in zip(corner, window, shape))] = True
        masks.append(m)
    return torch.stack(masks)


def _ablate(
    model,
    x: Tensor,
    masks: Tensor,
    base: Tensor,
    target: Target,
    forward_kwargs: Mapping[str, Any] | None,
    per_eval: int,
    layer_mask_hooks: Sequence[str] | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """(sum over masks of diff * mask, number of masks covering each feature, F(x))."""
    b = x.shape[0]
    with torch.no_grad():
        f_x = select_target(run_model(model, x, forward_kwargs), target, b)
        fdt = f_x.dtype  # attributions are in the output's dtype; x may hold token ids
        total = torch.zeros(x.shape, dtype=fdt)
        counts = torch.zeros(x.shape[1:], dtype=fdt)
        for start in range(0, masks.shape[0], per_eval):
            m = masks[start : start + per_eval]  # [k, *shape] bool
            k = m.shape[0]
            mb = m[:, None]  # [k, 1, *shape] broadcasts over the batch
            if layer_mask_hooks is None:
                pert = torch.where(mb, base[None], x[None]).reshape(k * b, *x.shape[1:])
                out = run_model(model, pert, repeat_kwargs(forward_kwargs, k, b))
            else:
                from hiddenlens.attribution.masking import layer_masked_forward

                keep = (~mb).expand(k, b, *x.shape[1:]).reshape(k * b, *x.shape[1:]).to(x)
                out = layer_masked_forward(
                    model, x.repeat(k, *([1] * (x.ndim - 1))), keep, layer_mask_hooks
                )
            vals = select_target(out, repeat_target(target, k), k * b).reshape(k, b)
            diff = f_x[None] - vals  # [k, b]
            total += torch.einsum("kb,k...->b...", diff, m.to(fdt))
            counts += m.sum(0).to(fdt)
    return total, counts, f_x


def occlusion(
    model,
    inputs: Tensor,
    *,
    window: Sequence[int],
    strides: Sequence[int] | int = 1,
    target: Target = None,
    baseline: Tensor | float | None = None,
    perturbations_per_eval: int = 16,
    forward_kwargs: Mapping[str, Any] | None = None,
    layer_mask_hooks: Sequence[str] | None = None,
) -> Attribution:
    """Occlusion attribution. inputs: [batch, *shape]; window and strides: one int per dim of shape.

    layer_mask_hooks: hook points (conv feature maps [b, c, h, w] or sequences [b, t, d]) where the
    occlusion mask is also applied (layer masking); the baseline is then ignored.
    """
    x = _check(inputs)
    shape = tuple(x.shape[1:])
    strides = (strides,) * len(shape) if isinstance(strides, int) else tuple(strides)
    masks = occlusion_masks(shape, tuple(window), strides)
    base = check_baseline(baseline, x)
    total, counts, f_x = _ablate(
        model,
        x,
        masks,
        base,
        target,
        forward_kwargs,
        _per_eval(perturbations_per_eval),
        layer_mask_hooks,
    )
    info = {"n_windows": masks.shape[0], "layer_masking": layer_mask_hooks is not None}
    return Attribution(total / counts, "occlusion", target_values=f_x, info=info)


def feature_ablation(
    model,
    inputs: Tensor,
    *,
    feature_mask: Tensor | None = None,
    target: Target = None,
    baseline: Tensor | float | None = None,
    perturbations_per_eval: int = 16,
    forward_kwargs: Mapping[str, Any] | None = None,
    layer_mask_hooks: Sequence[str] | None = None,
) -> Attribution:
    """Ablate groups of features. feature_mask: integer ids of one example's shape (or with a
    leading 1); None ablates every feature on its own. Works on non-differentiable models."""
    x = _check(inputs)
    shape = tuple(x.shape[1:])
    if feature_mask is None:
        feature_mask = torch.arange(math.prod(shape)).reshape(shape)
    fm = torch.as_tensor(feature_mask)
    if fm.ndim == len(shape) + 1 and fm.shape[0] == 1:
        fm = fm[0]
    if tuple(fm.shape) != shape or fm.dtype.is_floating_point:
        raise ValueError(
            f"feature_mask must be an integer tensor of shape {shape} (or (1, *{shape})), got "
            f"{fm.dtype} {tuple(fm.shape)}"
        )
    masks = torch.stack([fm == i for i in torch.unique(fm)])
    base = check_baseline(baseline, x)
    total, _, f_x = _ablate(
        model,
        x,
        masks,
        base,
        target,
        forward_kwargs,
        _per_eval(perturbations_per_eval),
        layer_mask_hooks,
    )
    info = {"n_groups": masks.shape[0], "layer_masking": layer_mask_hooks is not None}
    return Attribution(total, "feature_ablation", target_values=f_x, info=info)


def _check(inputs: Any) -> Tensor:
    if not isinstance(inputs, Tensor) or inputs.ndim < 2:
        got = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise TypeError(f"inputs must be a Tensor [batch, *shape] with ndim >= 2, got {got}")
    return inputs.detach()


def _per_eval(n: int) -> int:
    if n < 1:
        raise ValueError(f"perturbations_per_eval must be >= 1, got {n}")
    return int(n)
