"""Local rank of a layer's representation (Patel & Shwartz-Ziv 2024, "Learning to Compress:
Local Rank and Information Compression in Deep Neural Networks").

The local rank of layer ℓ at input x is the number of singular values of the Jacobian
∂h_ℓ(x)/∂x above a threshold; averaged over inputs it measures the dimension of the
manifold the layer maps its input neighbourhood onto. The paper reports it falls in late
training together with I(X;T). The threshold is relative to the largest singular value
(``rtol``) or absolute (``atol``); both are returned as parameters so values are comparable.
"""

from __future__ import annotations

import numpy as np

from hiddenlens._keys import metric_key
from hiddenlens._threads import torch_threads


def _jacobians(model, x, hook_point: str):
    """[n, d_out, d_in] Jacobian of the flattened activation at ``hook_point`` w.r.t. x.

    Rows are independent in eval mode (no batch statistics), so one backward pass per output
    unit gives that row of every example's Jacobian at once.
    """
    import torch

    from hiddenlens.hooks import patch

    x = x.detach().clone().requires_grad_(True)
    stash = {}

    def keep(t):
        stash["t"] = t
        return t

    with patch(model, {hook_point: keep}):
        model(x)
    t = stash["t"].reshape(x.shape[0], -1)
    rows = []
    for k in range(t.shape[1]):
        (g,) = torch.autograd.grad(t[:, k].sum(), x, retain_graph=k < t.shape[1] - 1)
        rows.append(g.reshape(x.shape[0], -1))
    return torch.stack(rows, dim=1)


def local_rank(
    model,
    x,
    hook_points: list[str],
    *,
    rtol: float = 1e-3,
    atol: float | None = None,
    max_inputs: int = 256,
) -> dict[str, float]:
    """Mean local rank per hook point: {"info/local_rank/<hook>": mean count of σ_i > threshold}.

    Args:
        model: nn.Module or ModelHandle taking ``x`` (a float tensor [n, ...]) directly.
        x: inputs; the first ``max_inputs`` rows are used.
        hook_points: resolved names (see :func:`hiddenlens.resolve_hook_points`).
        rtol: count σ_i > rtol · σ_max (per input); ignored when ``atol`` is given.
        atol: absolute threshold on σ_i.
    """
    import torch

    from hiddenlens.hooks import resolve_hook_points
    from hiddenlens.hooks.names import unwrap_model

    if atol is None and not (0 < rtol < 1):
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    if atol is not None and not atol > 0:
        raise ValueError(f"atol must be > 0, got {atol!r}")
    module = unwrap_model(model)
    names = resolve_hook_points(module, hook_points)
    xb = torch.as_tensor(x, dtype=torch.float32)[:max_inputs]
    was_training = module.training
    module.eval()
    out = {}
    try:
        with torch_threads(1):
            for name in names:
                sv = torch.linalg.svdvals(_jacobians(module, xb, name).double())  # [n, r]
                thr = atol if atol is not None else rtol * sv[:, :1].clamp_min(1e-300)
                out[metric_key("info", "local_rank", name)] = float((sv > thr).sum(dim=1).double().mean())
    finally:
        module.train(was_training)
    return out


def numerical_rank_profile(singular_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Mean count of singular values above each threshold: [n, r] x [m] -> [m] (for plots)."""
    sv = np.asarray(singular_values)[:, :, None]
    return (sv > np.asarray(thresholds)[None, None, :]).sum(axis=1).mean(axis=0)
