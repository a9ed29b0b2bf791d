"""Shared plumbing for attribution: targets, forward calls, validation, IG quadrature.

Every attribution method reduces a model's output to one differentiable scalar per example
(the *target*) and explains that scalar. The conventions follow Captum (Kokhlikyan et al.,
"Captum: A unified and generic model interpretability library for PyTorch", 2020) so results
can be checked against it: ``target`` is ``None`` (the output already is one scalar per
example), an ``int`` class index, one index per example, or a callable ``output -> [batch]``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

Target = int | Sequence[int] | Tensor | Callable[[Any], Tensor] | None
Inputs = Tensor | Mapping[str, Tensor]

IG_METHODS = (
    "gausslegendre",
    "riemann_left",
    "riemann_right",
    "riemann_middle",
    "riemann_trapezoid",
)
PERTURBATION_HINT = (
    "Gradient methods need a model whose output depends differentiably on its input; use a "
    "perturbation method instead: hiddenlens.attribution.occlusion() or feature_ablation()."
)


@dataclass
class Attribution:
    """Result of one attribution method.

    attributions: same shape as what was attributed (inputs, an activation, SAE latents).
    delta: [batch] completeness error ``sum(attr) - (F(x) - F(baseline))`` where defined.
    target_values: [batch] the explained scalar F(x).
    """

    attributions: Tensor
    method: str
    delta: Tensor | None = None
    target_values: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def per_example_sum(self) -> Tensor:
        """[batch] sum of the attributions of each example."""
        return self.attributions.reshape(self.attributions.shape[0], -1).sum(1)

    def numpy(self) -> np.ndarray:
        return self.attributions.detach().cpu().numpy()


def is_handle(model: Any) -> bool:
    """True for a hiddenlens ModelHandle (duck-typed: it wraps ``.model`` and has ``.kind``)."""
    return not isinstance(model, nn.Module) and hasattr(model, "model") and hasattr(model, "kind")


def module_of(model: Any) -> nn.Module:
    return model.model if is_handle(model) else model


def run_model(model: Any, inputs: Inputs, forward_kwargs: Mapping[str, Any] | None = None) -> Any:
    """Call ``model`` on a tensor (``model(x, **kw)``) or a dict of tensors (``model(**x, **kw)``)."""
    kw = dict(forward_kwargs or {})
    if is_handle(model):
        if not kw:
            return model.forward(inputs)
        model = model.model
    if isinstance(inputs, Mapping):
        return model(**dict(inputs), **kw)
    return model(inputs, **kw)


def first_tensor(output: Any) -> Tensor:
    """The tensor that class indices refer to: itself, ``.logits``, or the first tensor inside."""
    if isinstance(output, Tensor):
        return output
    if hasattr(output, "logits") and isinstance(output.logits, Tensor):
        return output.logits
    items = output.values() if isinstance(output, Mapping) else output
    if isinstance(output, tuple | list) or isinstance(output, Mapping):
        for item in items:
            if isinstance(item, Tensor):
                return item
    raise TypeError(
        f"model output of type {type(output).__name__} holds no tensor; pass target as a "
        "callable output -> Tensor[batch]"
    )


def select_target(output: Any, target: Target, batch: int) -> Tensor:
    """Reduce a model output to one scalar per example: a [batch] tensor."""
    if callable(target) and not isinstance(target, Tensor):
        values = target(output)
        if not isinstance(values, Tensor) or values.shape != (batch,):
            shape = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
            raise ValueError(
                f"target callable must return a Tensor of shape ({batch},), got {shape}"
            )
        return values
    out = first_tensor(output)
    if target is None:
        if out.shape[0] == batch and out.numel() == batch:
            return out.reshape(batch)
        raise ValueError(
            f"target=None needs one scalar output per example, got output shape "
            f"{tuple(out.shape)}; pass a class index, one index per example, or a callable"
        )
    if out.ndim != 2:
        raise ValueError(
            f"integer targets index dimension 1 of a [batch, classes] output; got output shape "
            f"{tuple(out.shape)}; pass a callable output -> Tensor[batch] instead"
        )
    idx = torch.as_tensor(target, device=out.device)
    if idx.dtype.is_floating_point:
        raise TypeError(f"target indices must be integers, got dtype {idx.dtype}")
    idx = idx.long().reshape(-1)
    if idx.numel() == 1:
        idx = idx.expand(batch)
    if idx.numel() != batch:
        raise ValueError(f"target has {idx.numel()} indices but the batch has {batch} examples")
    check_target(idx, out.shape[1])
    return out.gather(1, idx[:, None]).squeeze(1)


def check_target(target: Target, n_out: int | None) -> None:
    """Raise a ValueError for class indices outside [0, n_out)."""
    if target is None or callable(target) or n_out is None:
        return
    idx = torch.as_tensor(target).reshape(-1)
    if idx.dtype.is_floating_point:
        raise TypeError(f"target indices must be integers, got dtype {idx.dtype}")
    bad = idx[(idx < 0) | (idx >= n_out)]
    if bad.numel():
        raise ValueError(
            f"target index {int(bad[0])} is out of range for an output with {n_out} classes "
            f"(accepted 0..{n_out - 1})"
        )


def repeat_target(target: Target, times: int) -> Target:
    """The target for inputs repeated ``times`` times along the batch (step-major)."""
    if target is None or callable(target) or isinstance(target, int):
        return target
    idx = torch.as_tensor(target).reshape(-1)
    return idx.repeat(times) if idx.numel() > 1 else idx


def batch_size(inputs: Inputs) -> int:
    if isinstance(inputs, Mapping):
        return int(next(iter(inputs.values())).shape[0])
    return int(inputs.shape[0])


def repeat_inputs(inputs: Inputs, times: int) -> Inputs:
    """Tile along the batch, step-major: [x_0..x_{B-1}, x_0..x_{B-1}, ...]."""
    if isinstance(inputs, Mapping):
        return {k: _tile(v, times) for k, v in inputs.items()}
    return _tile(inputs, times)


def _tile(x: Any, times: int) -> Any:
    if not isinstance(x, Tensor) or x.ndim == 0:
        return x
    return x.repeat(times, *([1] * (x.ndim - 1)))


def check_baseline(baseline: Tensor | float | None, like: Tensor, name: str = "baseline") -> Tensor:
    """Broadcast a baseline to ``like``; None means zeros. Shapes that don't fit are an error."""
    if baseline is None:
        return torch.zeros_like(like)
    if not isinstance(baseline, Tensor):
        return torch.full_like(like, float(baseline))
    if baseline.shape == like.shape:
        return baseline.to(like)
    if baseline.shape == like.shape[1:] or (baseline.ndim == like.ndim and baseline.shape[0] == 1):
        try:
            return baseline.to(like).expand_as(like).clone()
        except RuntimeError:
            pass
    raise ValueError(
        f"{name} has shape {tuple(baseline.shape)}; accepted: a scalar, {tuple(like.shape)}, "
        f"{tuple(like.shape[1:])} or (1, {', '.join(map(str, like.shape[1:]))})"
    )


def ig_coefficients(method: str, n_steps: int) -> tuple[Tensor, Tensor]:
    """(step_sizes, alphas) of the path-integral quadrature; Captum's, except trapezoid."""
    if method not in IG_METHODS:
        raise ValueError(f"method={method!r} is not one of {IG_METHODS}")
    if n_steps < (1 if method == "gausslegendre" else 2):
        raise ValueError(
            f"n_steps must be >= 2 for {method} (>= 1 for gausslegendre), got {n_steps}"
        )
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n_steps)
        return torch.tensor(0.5 * w), torch.tensor(0.5 * (x + 1))
    steps = torch.full((n_steps,), 1.0 / n_steps, dtype=torch.float64)
    kind = method.split("_")[1]
    if kind == "trapezoid":
        # The textbook rule on n points spaced 1/(n-1); Captum uses 1/n here, so its weights
        # sum to (n-1)/n and completeness fails even for a linear model.
        steps = torch.full((n_steps,), 1.0 / (n_steps - 1), dtype=torch.float64)
        steps[0] /= 2
        steps[-1] /= 2
        alphas = torch.linspace(0, 1, n_steps)
    elif kind == "left":
        alphas = torch.linspace(0, 1 - 1 / n_steps, n_steps)
    elif kind == "middle":
        alphas = torch.linspace(1 / (2 * n_steps), 1 - 1 / (2 * n_steps), n_steps)
    else:
        alphas = torch.linspace(1 / n_steps, 1, n_steps)
    return steps, alphas.double()


def grad_of(values: Tensor, wrt: Sequence[Tensor]) -> list[Tensor]:
    """Gradients of ``values.sum()``; a clear message when the graph does not reach ``wrt``."""
    if not values.requires_grad:
        raise TypeError("the target does not require grad. " + PERTURBATION_HINT)
    grads = torch.autograd.grad(values.sum(), list(wrt), allow_unused=True)
    if any(g is None for g in grads):
        raise TypeError("the target does not depend on the attributed tensor. " + PERTURBATION_HINT)
    return list(grads)


@contextlib.contextmanager
def gradient_probes(model: Any, names: Sequence[str]):
    """Splice ``act + zero`` at each hook point, ``zero`` a leaf that requires grad.

    Yields ``{name: (activation, zero)}`` filled during the forward passes inside the block;
    ``grad_of(values, [zero, ...])`` is then dF/d(activation) at each point, without
    touching the parameters' ``.grad`` (which a ``backward()`` would accumulate into).
    """
    from hiddenlens.hooks import patch

    seen: dict[str, tuple[Tensor, Tensor]] = {}

    def probe(name: str) -> Callable[[Tensor], Tensor]:
        def fn(act: Tensor) -> Tensor:
            zero = torch.zeros_like(act, requires_grad=True)
            seen[name] = (act.detach(), zero)
            return act + zero

        return fn

    with torch.enable_grad(), patch(model, {n: probe(n) for n in names}):
        yield seen
