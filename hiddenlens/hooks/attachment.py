"""Lasting replacements at hook points: ``attach`` is ``patch`` that outlives a block.

``attach(model, {hook_point: module_or_fn})`` registers, at every hook point the keys name
(globs expand), a hook replacing the activation by ``fn(activation)`` — a codebook
bottleneck (Tamkin et al., 2023, "Codebook Features"), an SAE splice, an ablation — and
returns an :class:`Attachment` that removes them again (``detach()``, or use it as a
context manager). The replacing modules stay outside the model: its parameters and
``state_dict`` are untouched, and detaching restores its original computation exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from hiddenlens.hooks.capture import _checked, _register
from hiddenlens.hooks.names import get_module, parse_hook_spec, resolve_hook_points, unwrap_model


class Attachment:
    """Hooks placed by :func:`attach`; ``detach()`` removes them (idempotent).

    Attributes: ``model`` (the nn.Module), ``hook_points`` (the concrete names, in order),
    ``fns`` ({hook point: the callable applied there}), ``attached`` (bool).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.fns: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {}
        self._handles: list = []

    @property
    def hook_points(self) -> list[str]:
        return list(self.fns)

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def detach(self) -> nn.Module:
        """Remove every hook; returns the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return self.model

    def __enter__(self) -> Attachment:
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    def __repr__(self) -> str:
        state = "attached" if self.attached else "detached"
        return f"Attachment({type(self.model).__name__}, {self.hook_points}, {state})"


def attach(model, replacements: Mapping[str, Callable[[torch.Tensor], torch.Tensor]]) -> Attachment:
    """Replace the activation at each hook point by ``fn(activation)`` until detached.

    Args:
        model: a ``ModelHandle`` or any ``nn.Module``.
        replacements: {hook point or glob: module or function}; it must return a tensor of
            the activation's shape (gradients flow through it). A glob applies the same
            callable at every point it matches.
    Returns:
        an :class:`Attachment`; on any error nothing stays attached.
    """
    module = unwrap_model(model)
    if not replacements:
        raise ValueError("attach() needs at least one {hook_point: module_or_fn} entry")
    out = Attachment(module)
    try:
        for pattern, fn in replacements.items():
            if not callable(fn):
                raise TypeError(f"attach value for {pattern!r} must be callable, got {fn!r}")
            for name in resolve_hook_points(module, pattern):
                if name in out.fns:
                    raise ValueError(f"hook point {name!r} is named twice in attach()")
                spec = parse_hook_spec(name)
                target = get_module(module, spec.module_path)
                out._handles.append(_register(target, spec, _checked(name, fn), replaces=True))
                out.fns[name] = fn
    except Exception:
        out.detach()
        raise
    return out
