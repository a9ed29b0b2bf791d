"""Layer masking for perturbation attributions.

Balasubramanian & Feizi, "Towards Improved Input Masking for Convolutional Neural Networks"
(ICCV 2023): painting removed pixels grey or black shows the network a new pattern
(missingness bias). *Layer masking* instead applies the mask at every layer: removed
positions are filled from their unmasked neighbours ("neighbour padding") at the input and
again at each listed hook point, with the mask brought to that layer's resolution, which
approximates running the network on the unmasked region only.

A unit at a coarser layer is kept when any input position in its cell is kept (max pooling
of the keep mask), as in the paper's mask propagation.

:func:`missingness_bias` measures the paper's quantity: how far a masking method moves the
prediction when the removed region carries no information (a blank or background region), as
|Δ logit| of the clean prediction, KL(p_clean ‖ p_masked) and the prediction flip rate, for
black, grey, neighbour fill at the input only, and layer masking (:data:`MASKINGS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hiddenlens._keys import metric_key
from hiddenlens.attribution._core import run_model

__all__ = [
    "HOOK_MODES",
    "MASKINGS",
    "MissingnessBias",
    "neighbour_fill",
    "layer_masked_forward",
    "masked_forward",
    "missingness_bias",
]

#: How removed positions are handled: painted 0, painted ``grey``, filled from kept neighbours at
#: the input only, or layer masking (neighbour fill at the input and every listed hook point).
MASKINGS = ("black", "grey", "neighbour", "layer")


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


#: What layer masking does at a hook point: ``"fill"`` neighbour-fills removed positions (image
#: maps; sequences are zeroed); ``"mean"`` sets them to the per-channel mean of the kept ones, so
#: a following global average pool averages over kept positions only, as the paper's masked
#: pooling does.
HOOK_MODES = ("fill", "mean")


def _hook_modes(hook_points: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
    modes = (
        dict(hook_points)
        if isinstance(hook_points, Mapping)
        else dict.fromkeys(hook_points, "fill")
    )
    bad = {h: m for h, m in modes.items() if m not in HOOK_MODES}
    if bad:
        raise ValueError(f"layer-masking modes {bad} unknown; accepted per hook: {HOOK_MODES}")
    return modes


def _masked_act(act: Tensor, keep: Tensor, mode: str, max_iter: int | None) -> Tensor:
    k = _keep_at(keep, act)
    if k is None:
        return act
    if act.ndim == 3:
        k = k.unsqueeze(-1).to(act)  # [n, T, 1]
    if mode == "mean":
        dims = tuple(range(2, act.ndim)) if act.ndim == 4 else (1,)
        kept = k.to(act)
        mean = (act * kept).sum(dims, keepdim=True) / kept.sum(dims, keepdim=True).clamp_min(1)
        return torch.where(kept > 0, act, mean)
    if act.ndim == 4:
        return neighbour_fill(act, k, max_iter)
    return act * k


def layer_masked_forward(
    model,
    x: Tensor,
    keep: Tensor,
    hook_points: Sequence[str] | Mapping[str, str],
    *,
    max_iter: int | None = None,
):
    """Run ``model`` on ``x`` with the keep mask (same shape as x, 1 = kept) applied at the input
    and at every hook point: image-like maps [N, C, H, W] are neighbour-filled, sequences
    [N, T, D] have removed positions zeroed; other activations pass unchanged. hook_points: a
    list (every hook ``"fill"``) or ``{hook: mode}`` with modes from :data:`HOOK_MODES`."""
    from hiddenlens.hooks import patch

    if keep.shape != x.shape:
        raise ValueError(
            f"keep mask shape {tuple(keep.shape)} must equal the input's {tuple(x.shape)}"
        )
    modes = _hook_modes(hook_points)
    x_in = neighbour_fill(x, keep.amin(1, keepdim=True), max_iter) if x.ndim == 4 else x * keep
    if not modes:
        return run_model(model, x_in)
    fns = {h: (lambda act, m=m: _masked_act(act, keep, m, max_iter)) for h, m in modes.items()}
    with patch(model, fns):
        return run_model(model, x_in)


def _check_masking(method: str, hook_points) -> None:
    if method not in MASKINGS:
        raise ValueError(f"unknown masking method {method!r}; accepted: {MASKINGS}")
    if method == "layer" and not hook_points:
        raise ValueError(
            "masking 'layer' needs hook_points (the conv layers where the mask is applied); "
            "with none it is the same as 'neighbour'"
        )


def masked_forward(
    model,
    x: Tensor,
    keep: Tensor,
    method: str,
    *,
    hook_points: Sequence[str] | Mapping[str, str] = (),
    grey: float = 0.5,
):
    """Run ``model`` on ``x`` [N, C, H, W] with positions where ``keep`` is 0 removed by
    ``method`` (one of :data:`MASKINGS`). keep: x's shape or broadcastable to it
    ([N, 1, H, W], [1, 1, H, W]); 1 = kept. hook_points: the layers of layer masking, as in
    :func:`layer_masked_forward` (e.g. ``{"conv1": "fill", "conv2": "mean"}`` where conv2
    feeds a global average pool)."""
    _check_masking(method, hook_points)
    try:
        keep = torch.as_tensor(keep).to(x).expand_as(x)
    except RuntimeError as err:
        raise ValueError(
            f"keep mask shape {tuple(keep.shape)} does not broadcast to the input's "
            f"{tuple(x.shape)}"
        ) from err
    if method == "black":
        return run_model(model, x * keep)
    if method == "grey":
        return run_model(model, torch.where(keep > 0, x, torch.full_like(x, float(grey))))
    return layer_masked_forward(
        model, x, keep.contiguous(), hook_points if method == "layer" else ()
    )


@dataclass
class MissingnessBias:
    """The prediction shift of one masking method on a removed region that should not matter.

    dlogit [n]: |Δ| of the logit of the clean predicted class; kl [n]: KL(p_clean ‖ p_masked)
    in nats; pred_clean, pred_masked [n]: argmax classes (a flip is where they differ); dprob
    [n]: signed change of the clean predicted class's probability (> 0: more confident).
    """

    method: str
    dlogit: np.ndarray
    kl: np.ndarray
    pred_clean: np.ndarray
    pred_masked: np.ndarray
    dprob: np.ndarray

    @property
    def flip_rate(self) -> float:
        return float(np.mean(self.pred_clean != self.pred_masked))

    def to_metrics(self, where: str | None = None) -> dict[str, float]:
        """``attribution/missingness_{dlogit,kl,flip_rate,dprob}/<where>`` (means; ``where``
        defaults to the method, e.g. ``"grey/k=4"``)."""
        w = where or self.method
        return {
            metric_key("attribution", "missingness_dlogit", w): float(self.dlogit.mean()),
            metric_key("attribution", "missingness_kl", w): float(self.kl.mean()),
            metric_key("attribution", "missingness_flip_rate", w): self.flip_rate,
            metric_key("attribution", "missingness_dprob", w): float(self.dprob.mean()),
        }


def missingness_bias(
    model,
    x: Tensor,
    keep: Tensor,
    method: str,
    *,
    hook_points: Sequence[str] | Mapping[str, str] = (),
    grey: float = 0.5,
    batch_size: int = 256,
) -> MissingnessBias:
    """Missingness bias of ``method`` (Balasubramanian & Feizi 2023): ``model``'s logits [n, K]
    on ``x`` [n, C, H, W] against its logits when the positions where ``keep`` is 0 are removed.
    Meant for removed regions that hold no evidence (blank background), where an unbiased
    removal leaves the prediction unchanged. keep: as in :func:`masked_forward`."""
    _check_masking(method, hook_points)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    keep = torch.as_tensor(keep)
    per_row = keep.shape[0] == x.shape[0] and keep.shape[0] > 1
    clean, masked = [], []
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size]
            kb = keep[s : s + batch_size] if per_row else keep
            clean.append(run_model(model, xb))
            masked.append(masked_forward(model, xb, kb, method, hook_points=hook_points, grey=grey))
    lc, lm = torch.cat(clean).double(), torch.cat(masked).double()  # [n, K]
    if lc.ndim != 2:
        raise ValueError(f"the model must return logits [n, classes], got {tuple(lc.shape)}")
    pred = lc.argmax(1)
    logp, logq = lc.log_softmax(1), lm.log_softmax(1)
    kl = (logp.exp() * (logp - logq)).sum(1)
    at = pred[:, None]
    dlogit = (lm - lc).gather(1, at)[:, 0].abs()
    dprob = (logq.exp() - logp.exp()).gather(1, at)[:, 0]
    return MissingnessBias(  # .cpu(): the model may run on a GPU
        method,
        dlogit.cpu().numpy(),
        kl.clamp_min(0).cpu().numpy(),
        pred.cpu().numpy(),
        lm.argmax(1).cpu().numpy(),
        dprob.cpu().numpy(),
    )
