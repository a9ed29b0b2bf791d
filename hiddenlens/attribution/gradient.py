"""Gradient attribution on inputs: saliency, input x gradient, integrated gradients, SmoothGrad.

- Saliency: |dF/dx| (Simonyan et al., "Deep Inside Convolutional Networks", 2014).
- Input x gradient: x * dF/dx (Shrikumar et al., 2016).
- Integrated gradients: (x - x') * int_0^1 dF/dx(x' + a (x - x')) da (Sundararajan et al.,
  "Axiomatic Attribution for Deep Networks", 2017). All interpolation steps run as one batch
  (or chunks of ``internal_batch_size``); completeness ``sum(attr) = F(x) - F(x')`` is checked and
  its error reported as ``delta``. The quadrature rules are Captum's, so results match it.
- SmoothGrad: the average of a method over Gaussian-noised copies of the input (Smilkov et al.,
  "SmoothGrad: removing noise by adding noise", 2017), noise std = noise_level * (max - min).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from hiddenlens.attribution._core import (
    Attribution,
    Target,
    check_baseline,
    grad_of,
    ig_coefficients,
    repeat_target,
    run_model,
    select_target,
)

__all__ = ["saliency", "input_x_gradient", "integrated_gradients", "smoothgrad"]


def _check_input(inputs: Any) -> Tensor:
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a torch.Tensor [batch, ...], got {type(inputs).__name__}")
    if not inputs.is_floating_point():
        raise TypeError(
            f"gradient methods need floating-point inputs, got dtype {inputs.dtype}; for token ids "
            "attribute at the embedding hook point (token_attributions / layer_integrated_gradients)"
        )
    if inputs.ndim == 0:
        raise ValueError("inputs must have a batch dimension, got a 0-d tensor")
    return inputs.detach()


def repeat_kwargs(kwargs: Mapping[str, Any] | None, times: int, batch: int) -> dict[str, Any]:
    """Tile every tensor with a leading batch dimension ``times`` times (step-major)."""
    out = {}
    for k, v in (kwargs or {}).items():
        if isinstance(v, Tensor) and v.ndim and v.shape[0] == batch:
            v = v.repeat(times, *([1] * (v.ndim - 1)))
        out[k] = v
    return out


def _input_gradient(model, x: Tensor, target: Target, forward_kwargs) -> tuple[Tensor, Tensor]:
    """(dF/dx, F(x)) for a batch; x is a detached copy that gets requires_grad."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        values = select_target(run_model(model, x, forward_kwargs), target, x.shape[0])
        (grad,) = grad_of(values, [x])
    return grad, values.detach()


def saliency(
    model, inputs: Tensor, *, target: Target = None, abs: bool = True, forward_kwargs=None
) -> Attribution:
    """Input gradient (absolute value by default, as Captum's ``Saliency``). inputs: [batch, ...]."""
    x = _check_input(inputs)
    grad, values = _input_gradient(model, x, target, forward_kwargs)
    return Attribution(grad.abs() if abs else grad, "saliency", target_values=values)


def input_x_gradient(
    model, inputs: Tensor, *, target: Target = None, forward_kwargs=None
) -> Attribution:
    """x * dF/dx. For a linear model F = w.x + b this is w * x exactly."""
    x = _check_input(inputs)
    grad, values = _input_gradient(model, x, target, forward_kwargs)
    return Attribution(x * grad, "input_x_gradient", target_values=values)


def integrated_gradients(
    model,
    inputs: Tensor,
    *,
    target: Target = None,
    baseline: Tensor | float | None = None,
    n_steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Integrated gradients of ``target`` w.r.t. ``inputs`` [batch, ...].

    baseline: None (zeros), a scalar, or a tensor of the input's shape / one example's shape.
    internal_batch_size: at most this many rows per forward pass (None: all steps at once).
    Returns an Attribution whose ``delta`` [batch] is the completeness error.
    """
    x = _check_input(inputs)
    base = check_baseline(baseline, x)
    steps, alphas = ig_coefficients(method, n_steps)
    b = x.shape[0]
    per_pass = n_steps if internal_batch_size is None else max(1, internal_batch_size // b)
    grad_sum = torch.zeros_like(x)
    diff = x - base
    bcast = (-1,) + (1,) * x.ndim  # one alpha per step, broadcast over [batch, ...]
    for start in range(0, n_steps, per_pass):
        a = alphas[start : start + per_pass].to(x)
        k = a.numel()
        scaled = (base[None] + a.view(bcast) * diff[None]).reshape(k * b, *x.shape[1:])
        scaled.requires_grad_(True)
        with torch.enable_grad():
            out = run_model(model, scaled, repeat_kwargs(forward_kwargs, k, b))
            values = select_target(out, repeat_target(target, k), k * b)
            (g,) = grad_of(values, [scaled])
        w = steps[start : start + k].to(x).view(bcast)
        grad_sum += (g.reshape(k, *x.shape) * w).sum(0)
    attr = grad_sum * diff
    with torch.no_grad():  # both end points in one pass: [x; baseline]
        ends = torch.cat([x, base])
        out = run_model(model, ends, repeat_kwargs(forward_kwargs, 2, b))
        f_x, f_b = select_target(out, repeat_target(target, 2), 2 * b).reshape(2, b)
    delta = attr.reshape(b, -1).sum(1) - (f_x - f_b)
    info = {"n_steps": n_steps, "method": method, "baseline_values": f_b}
    return Attribution(attr, "integrated_gradients", delta=delta, target_values=f_x, info=info)


_BASE_METHODS = {
    "saliency": lambda m, x, t, kw: saliency(m, x, target=t, abs=False, forward_kwargs=kw),
    "input_x_gradient": lambda m, x, t, kw: input_x_gradient(m, x, target=t, forward_kwargs=kw),
    "integrated_gradients": lambda m, x, t, kw: integrated_gradients(
        m, x, target=t, n_steps=20, forward_kwargs=kw
    ),
}


def smoothgrad(
    model,
    inputs: Tensor,
    *,
    target: Target = None,
    base: str = "saliency",
    n_samples: int = 25,
    noise_level: float = 0.15,
    stdev: float | None = None,
    squared: bool = False,
    seed: int = 0,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Average of ``base`` ("saliency" (signed gradient), "input_x_gradient",
    "integrated_gradients") over ``n_samples`` noisy copies, all copies in one batch.

    Noise std per example: ``stdev`` if given, else ``noise_level * (max(x) - min(x))``.
    squared=True gives SmoothGrad-Squared (mean of squared attributions).
    """
    if base not in _BASE_METHODS:
        raise ValueError(f"base={base!r} is not one of {sorted(_BASE_METHODS)}")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    x = _check_input(inputs)
    b = x.shape[0]
    flat = x.reshape(b, -1)
    sigma = (
        torch.full((b,), float(stdev))
        if stdev is not None
        else noise_level * (flat.max(1).values - flat.min(1).values)
    ).to(x)
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn((n_samples, *x.shape), generator=gen).to(x)
    noisy = (x[None] + noise * sigma.view(1, b, *([1] * (x.ndim - 1)))).reshape(-1, *x.shape[1:])
    kw = repeat_kwargs(forward_kwargs, n_samples, b)
    attr = _BASE_METHODS[base](model, noisy, repeat_target(target, n_samples), kw).attributions
    attr = attr.reshape(n_samples, *x.shape)
    attr = (attr**2).mean(0) if squared else attr.mean(0)
    info = {"base": base, "n_samples": n_samples, "sigma": sigma}
    return Attribution(attr, "smoothgrad_sq" if squared else "smoothgrad", info=info)
