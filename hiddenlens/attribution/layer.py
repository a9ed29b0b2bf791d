"""Attribution to hidden activations at any hook point, and to the latents of a spliced SAE.

- Gradient x activation at a layer (Shrikumar et al. 2016 applied to hidden units; Captum's
  ``LayerGradientXActivation``).
- Layer integrated gradients: IG along the straight path from a baseline activation to the
  real one at the hook point, everything downstream recomputed (Captum's
  ``LayerIntegratedGradients``; Sundararajan et al. 2017). Steps run batched.
- SAE latents: the SAE is spliced in at the hook point with ``patch`` (activation ->
  decode(encode(activation)) + the reconstruction error, held fixed so the forward pass is
  unchanged) and latents are scored by latent x gradient or IG from zero latents, as in
  Marks et al., "Sparse Feature Circuits" (2024).

Models may be an ``nn.Module`` or a hiddenlens ``ModelHandle``; inputs a tensor or a dict of
tensors (tokenised text). Gradients at a point are read through a zero tensor added to the
activation, so several points can be scored in one backward pass without cutting the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from hiddenlens.attribution._core import (
    Attribution,
    Inputs,
    Target,
    batch_size,
    check_baseline,
    grad_of,
    gradient_probes,
    ig_coefficients,
    module_of,
    repeat_inputs,
    repeat_target,
    run_model,
    select_target,
)

__all__ = [
    "capture_activations",
    "layer_gradient_x_activation",
    "layer_integrated_gradients",
    "sae_latent_attribution",
]


def _resolve(model, hook_points: str | Sequence[str]) -> list[str]:
    from hiddenlens.hooks import resolve_hook_points

    pats = [hook_points] if isinstance(hook_points, str) else list(hook_points)
    return resolve_hook_points(module_of(model), pats)


def capture_activations(
    model, inputs: Inputs, hook_points, forward_kwargs=None
) -> dict[str, Tensor]:
    """Activations at ``hook_points`` for ``inputs`` (no grad, stops after the last point)."""
    from hiddenlens.hooks import capture

    names = _resolve(model, hook_points)
    with torch.no_grad(), capture(model, names) as cap:
        run_model(model, inputs, forward_kwargs)
    return {n: cap[n] for n in names}


def layer_gradient_x_activation(
    model,
    inputs: Inputs,
    hook_points: str | Sequence[str],
    *,
    target: Target = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> dict[str, Attribution]:
    """activation * dF/dactivation at each hook point, one forward and one backward pass.

    Returns {hook point: Attribution} with attributions of the activation's shape; the raw
    gradient is in ``info["gradient"]``, the activation in ``info["activation"]``.
    """

    names = _resolve(model, hook_points)
    with gradient_probes(model, names) as seen:
        out = run_model(model, inputs, forward_kwargs)
        values = select_target(out, target, batch_size(inputs))
        grads = grad_of(values, [seen[n][1] for n in names])
    return {
        n: Attribution(
            seen[n][0] * g,
            "layer_gradient_x_activation",
            target_values=values.detach(),
            info={"gradient": g, "activation": seen[n][0], "hook_point": n},
        )
        for n, g in zip(names, grads)
    }


def _ig_over_replacement(
    model,
    inputs: Inputs,
    hook_point: str,
    make_value: Callable[[Tensor, Tensor], Tensor],
    start: Tensor,
    end: Tensor,
    *,
    target: Target,
    n_steps: int,
    method: str,
    internal_batch_size: int | None,
    forward_kwargs,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """IG of the target along start -> end for a quantity spliced in at ``hook_point``.

    make_value(point [k*B, ...], act [k*B, ...]) builds the activation from a path point.
    Returns (attributions [B, ...], F(end), F(start), delta [B]).
    """
    from hiddenlens.hooks import patch

    steps, alphas = ig_coefficients(method, n_steps)
    b = batch_size(inputs)
    per_pass = n_steps if internal_batch_size is None else max(1, internal_batch_size // b)
    grad_sum = torch.zeros_like(end)
    bcast = (-1,) + (1,) * end.ndim
    for s in range(0, n_steps, per_pass):
        a = alphas[s : s + per_pass].to(end)
        k = a.numel()
        point = (start[None] + a.view(bcast) * (end - start)[None]).reshape(k * b, *end.shape[1:])
        point.requires_grad_(True)
        with (
            torch.enable_grad(),
            patch(model, {hook_point: lambda act, p=point: make_value(p, act)}),
        ):
            out = run_model(model, repeat_inputs(inputs, k), forward_kwargs)
            values = select_target(out, repeat_target(target, k), k * b)
            (g,) = grad_of(values, [point])
        grad_sum += (g.reshape(k, *end.shape) * steps[s : s + k].to(end).view(bcast)).sum(0)
    attr = grad_sum * (end - start)
    f = []
    for val in (end, start):
        with torch.no_grad(), patch(model, {hook_point: lambda act, v=val: make_value(v, act)}):
            f.append(select_target(run_model(model, inputs, forward_kwargs), target, b))
    delta = attr.reshape(b, -1).sum(1) - (f[0] - f[1])
    return attr, f[0], f[1], delta


def layer_integrated_gradients(
    model,
    inputs: Inputs,
    hook_point: str,
    *,
    target: Target = None,
    baseline: Tensor | float | None = None,
    baseline_inputs: Inputs | None = None,
    n_steps: int = 50,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """IG at one hook point; attributions have the activation's shape, ``delta`` [batch].

    The baseline activation is ``baseline`` (None: zeros; a scalar; a tensor of the activation's
    shape) or the activation produced by ``baseline_inputs`` (e.g. all-padding token ids).
    """
    names = _resolve(model, hook_point)
    if len(names) != 1:
        raise ValueError(
            f"layer_integrated_gradients takes one hook point; {hook_point!r} -> {names}"
        )
    name = names[0]
    act = capture_activations(model, inputs, name, forward_kwargs)[name]
    if baseline_inputs is not None:
        if baseline is not None:
            raise ValueError("pass either baseline or baseline_inputs, not both")
        base = capture_activations(model, baseline_inputs, name, forward_kwargs)[name]
        base = check_baseline(base, act, "activation of baseline_inputs")
    else:
        base = check_baseline(baseline, act, "baseline activation")
    attr, f_x, f_b, delta = _ig_over_replacement(
        model,
        inputs,
        name,
        lambda p, _act: p,
        base,
        act,
        target=target,
        n_steps=n_steps,
        method=method,
        internal_batch_size=internal_batch_size,
        forward_kwargs=forward_kwargs,
    )
    info = {"hook_point": name, "n_steps": n_steps, "baseline_values": f_b}
    return Attribution(
        attr, "layer_integrated_gradients", delta=delta, target_values=f_x, info=info
    )


def _check_sae(sae: Any) -> None:
    for attr in ("encode", "decode"):
        if not callable(getattr(sae, attr, None)):
            raise TypeError(
                f"sae must have callable encode() and decode(); {type(sae).__name__} lacks {attr}"
            )


def sae_latent_attribution(
    model,
    inputs: Inputs,
    hook_point: str,
    sae: Any,
    *,
    target: Target = None,
    method: str = "grad_x_act",
    n_steps: int = 32,
    include_error: bool = True,
    forward_kwargs: Mapping[str, Any] | None = None,
) -> Attribution:
    """Attribution to the latents of ``sae`` (any object with encode/decode on [..., d]).

    method: "grad_x_act" (latent x gradient) or "integrated_gradients" (path from zero latents).
    include_error: add the SAE's reconstruction error back so the spliced model computes the
    same output as the original. Attributions: [*activation.shape[:-1], n_latents].
    """
    if method not in ("grad_x_act", "integrated_gradients"):
        raise ValueError(f"method={method!r}; accepted: 'grad_x_act', 'integrated_gradients'")
    _check_sae(sae)
    name = _resolve(model, hook_point)[0]
    act = capture_activations(model, inputs, name, forward_kwargs)[name]
    d = act.shape[-1]
    with torch.no_grad():
        z = sae.encode(act.reshape(-1, d))
        err = act.reshape(-1, d) - sae.decode(z)
    z = z.reshape(*act.shape[:-1], -1)
    err = err.reshape(act.shape) if include_error else torch.zeros_like(act)

    def splice(latents: Tensor, a: Tensor) -> Tensor:
        rec = sae.decode(latents.reshape(-1, latents.shape[-1])).reshape(a.shape)
        reps = a.shape[0] // err.shape[0]  # the inputs are repeated step-major for IG
        return rec + err.repeat(reps, *([1] * (err.ndim - 1)))

    if method == "grad_x_act":
        from hiddenlens.hooks import patch

        leaf = z.clone().requires_grad_(True)
        with torch.enable_grad(), patch(model, {name: lambda a: splice(leaf, a)}):
            values = select_target(
                run_model(model, inputs, forward_kwargs), target, batch_size(inputs)
            )
            (g,) = grad_of(values, [leaf])
        info = {"hook_point": name, "latents": z, "gradient": g}
        return Attribution(z * g, "sae_latent_grad_x_act", target_values=values.detach(), info=info)
    attr, f_x, f_b, delta = _ig_over_replacement(
        model,
        inputs,
        name,
        splice,
        torch.zeros_like(z),
        z,
        target=target,
        n_steps=n_steps,
        method="gausslegendre",
        internal_batch_size=None,
        forward_kwargs=forward_kwargs,
    )
    info = {"hook_point": name, "latents": z, "baseline_values": f_b}
    return Attribution(
        attr, "sae_latent_integrated_gradients", delta=delta, target_values=f_x, info=info
    )
