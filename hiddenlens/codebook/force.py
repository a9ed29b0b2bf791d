"""Steering by forcing codes on, and the output shift it causes.

"Codebook Features" (Tamkin, Taufeeque & Goodman, 2023) steers a network by activating
chosen codes during generation. Inside :func:`force` the codebook at each named hook point
outputs the sum of the given codes instead of its own top-k selection: with k > 1 the whole
set of k codes is replaced, not just one of them. The output shift is measured by the
Jensen-Shannon divergence between the output distributions with and without forcing.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from hiddenlens.codebook.attach import CodebookModel, attached_codebooks
from hiddenlens.codebook.finetune import default_forward
from hiddenlens.hooks.names import unwrap_model


def _layers_for(model, hooks) -> dict:
    if isinstance(model, CodebookModel):
        found = {h: model for h in model.hook_points}
    else:
        found = attached_codebooks(unwrap_model(model))
    missing = [h for h in hooks if h not in found]
    if missing:
        raise ValueError(f"no codebook attached at {missing}; attached: {sorted(found)}")
    return {h: found[h].layers[h] for h in hooks}


@contextlib.contextmanager
def force(model, codes: Mapping[str, Sequence[int]], *, positions=None):
    """Force codes on at hook points for every forward pass (and generation) inside.

    model: a CodebookModel or a model with codebooks attached.
    codes: {hook point: [code ids]}; the codebook outputs the sum of exactly these codes.
    positions: optional index (int, list or slice) along the sequence dim (-2) of
        [batch, seq, d] activations; other positions keep their own codes.
    """
    if not isinstance(codes, Mapping) or not codes:
        raise TypeError(f"codes must be a non-empty mapping hook -> [code ids], got {codes!r}")
    layers = _layers_for(model, list(codes))
    chosen = {}
    for hook, ids in codes.items():
        ids = [ids] if isinstance(ids, int) else list(ids)
        layer = layers[hook]
        if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise TypeError(f"code ids for {hook!r} must be a non-empty list of ints, got {ids}")
        bad = [i for i in ids if not 0 <= i < layer.n_codes]
        if bad:
            raise ValueError(f"code ids {bad} out of range for {hook!r}: [0, {layer.n_codes})")
        if len(set(ids)) != len(ids):
            raise ValueError(f"code ids for {hook!r} repeat: {ids}")
        chosen[hook] = ids
    previous = {h: (layer.forced, layer.forced_positions) for h, layer in layers.items()}
    try:
        for hook, layer in layers.items():
            layer.forced, layer.forced_positions = chosen[hook], positions
        yield model
    finally:
        for hook, layer in layers.items():
            layer.forced, layer.forced_positions = previous[hook]


def jsd(logits_p: torch.Tensor, logits_q: torch.Tensor) -> float:
    """Mean Jensen-Shannon divergence (nats, in [0, ln 2]) between softmax(logits_p) and
    softmax(logits_q) along the last dim, averaged over all leading positions."""
    if logits_p.shape != logits_q.shape:
        raise ValueError(f"shapes differ: {tuple(logits_p.shape)} vs {tuple(logits_q.shape)}")
    lp = F.log_softmax(logits_p.double(), -1)
    lq = F.log_softmax(logits_q.double(), -1)
    lm = torch.logsumexp(torch.stack([lp, lq]), 0) - math.log(2.0)
    kl_pm = (lp.exp() * (lp - lm)).sum(-1)
    kl_qm = (lq.exp() * (lq - lm)).sum(-1)
    return float((0.5 * (kl_pm + kl_qm)).clamp_min(0).mean())


@torch.no_grad()
def output_shift(
    model,
    batch,
    codes: Mapping[str, Sequence[int]],
    *,
    positions=None,
    forward: Callable = default_forward,
    logits: Callable = lambda out: out if isinstance(out, torch.Tensor) else out[0],
) -> dict[str, float]:
    """Output change caused by forcing ``codes``: {"jsd", "argmax_changed"} averaged over
    positions (``argmax_changed`` is the share of positions whose top output changed)."""
    net = unwrap_model(model)
    base = logits(forward(net, batch)).float()
    with force(model, codes, positions=positions):
        forced = logits(forward(net, batch)).float()
    return {
        "jsd": jsd(forced, base),
        "argmax_changed": float((forced.argmax(-1) != base.argmax(-1)).float().mean()),
    }
