"""Layer masking for perturbation attributions.

Balasubramanian & Feizi, "Towards Improved Input Masking for Convolutional Neural Networks"
(ICCV 2023): painting removed pixels grey or black shows the network a new pattern
(missingness bias). *Layer masking* instead applies the mask at every layer: removed
positions are filled from their unmasked neighbours ("neighbour padding") at the input and
again at each listed hook point, with the mask brought to that layer's resolution, which
approximates running the network on the unmasked region only.

A unit at a coarser layer is kept when any input position in its cell is kept (max pooling
of the keep mask), as in the paper's mask propagation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from hiddenlens.attribution._core import run_model

__all__ = ["neighbour_fill", "layer_masked_forward"]


def neighbour_fill(x: Tensor, keep: Tensor, max_iter: int | None = None) -> Tensor:
    """Fill removed positions of ``x`` [N, C, H, W] from kept 3x3 neighbours, repeatedly.

    keep: [N, 1, H, W] in {0, 1}. Each pass sets every removed position that touches a kept one
    to the mean of its kept neighbours and marks it kept, until nothing is left (an all-removed
    example becomes zeros).
    """
    n, c, h, w = x.shape
    keep = keep.to(x)
    out = x * keep
    box_x = torch.ones(c, 1, 3, 3, dtype=x.dtype, device=x.device)
    box_m = torch.ones(1, 1, 3, 3, dtype=x.dtype, device=x.device)
    for _ in range(max_iter or (h + w)):
        if bool(keep.min() > 0):
            break
        sums = F.conv2d(out, box_x, padding=1, groups=c)
        counts = F.conv2d(keep, box_m, padding=1)
        fresh = (keep == 0) & (counts > 0)
        out = torch.where(fresh, sums / counts.clamp_min(1), out)
        keep = torch.where(fresh, torch.ones_like(keep), keep)
    return out


def _keep_at(keep: Tensor, act: Tensor) -> Tensor | None:
    """The keep mask at an activation's resolution; None when it has no spatial layout."""
    n = act.shape[0]
    if act.ndim == 4 and keep.ndim == 4:
        spatial = keep.amin(1, keepdim=True)  # a position is removed if any channel is
        return F.adaptive_max_pool2d(spatial, act.shape[-2:])
    if act.ndim == 3 and keep.ndim >= 2:
        per_pos = keep.reshape(n, keep.shape[1], -1).amin(-1)  # [n, T]
        if per_pos.shape[1] == act.shape[1]:
            return per_pos
    return None


def layer_masked_forward(
    model, x: Tensor, keep: Tensor, hook_points: Sequence[str], *, max_iter: int | None = None
):
    """Run ``model`` on ``x`` with the keep mask (same shape as x, 1 = kept) applied at the input
    and at every hook point: image-like maps [N, C, H, W] are neighbour-filled, sequences
    [N, T, D] have removed positions zeroed; other activations pass unchanged."""
    from hiddenlens.hooks import patch

    if keep.shape != x.shape:
        raise ValueError(
            f"keep mask shape {tuple(keep.shape)} must equal the input's {tuple(x.shape)}"
        )
    x_in = neighbour_fill(x, keep.amin(1, keepdim=True), max_iter) if x.ndim == 4 else x * keep

    def fn(act: Tensor) -> Tensor:
        k = _keep_at(keep, act)
        if k is None:
            return act
        if act.ndim == 4:
            return neighbour_fill(act, k, max_iter)
        return act * k.unsqueeze(-1).to(act)

    if not hook_points:
        return run_model(model, x_in)
    with patch(model, {h: fn for h in hook_points}):
        return run_model(model, x_in)
