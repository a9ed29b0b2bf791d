"""Capture and patch activations at named hook points of any ``nn.Module``.

``capture`` records forward activations (and, on request, the gradients of whatever the
caller backpropagates) and can stop the forward pass once every requested point has fired,
as nnsight and TransformerLens' ``stop_at_layer`` do. ``patch`` replaces an activation by
``fn(activation)`` — the splice used for SAE reconstructions, codebooks, ablations and
activation patching. Hooks are always removed, even when the forward pass raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from hiddenlens.hooks.names import (
    HookSpec,
    get_module,
    parse_hook_spec,
    resolve_hook_points,
    unwrap_model,
)


class StopForward(Exception):
    """Raised inside a hook to abort the forward pass after the last requested point."""


def _tensor_positions(value: Any) -> list[Any]:
    """Keys (tuple indices or mapping keys) of the tensors inside a module's output."""
    if isinstance(value, torch.Tensor):
        return [None]
    if isinstance(value, Mapping):
        return [k for k, v in value.items() if isinstance(v, torch.Tensor)]
    if isinstance(value, (tuple, list)):
        return [i for i, v in enumerate(value) if isinstance(v, torch.Tensor)]
    return []


def _position(spec: HookSpec, value: Any):
    positions = _tensor_positions(value)
    if not positions:
        raise TypeError(
            f"hook point {spec.name!r} carries {type(value).__name__}, which holds no tensor"
        )
    if positions == [None]:
        if spec.index not in (None, 0):
            raise ValueError(f"hook point {spec.name!r}: the value is a single tensor, not a tuple")
        return None
    if spec.index is None:
        return positions[0]
    if isinstance(value, Mapping):
        keys = list(value.keys())
        if spec.index >= len(keys):
            raise ValueError(f"hook point {spec.name!r}: index {spec.index} out of {len(keys)}")
        return keys[spec.index]
    if spec.index >= len(value):
        raise ValueError(f"hook point {spec.name!r}: index {spec.index} out of {len(value)}")
    return spec.index


def select_tensor(spec: HookSpec, value: Any) -> torch.Tensor:
    """The tensor a hook point names inside a module's input tuple or output."""
    pos = _position(spec, value)
    return value if pos is None else value[pos]


def replace_tensor(spec: HookSpec, value: Any, new: torch.Tensor) -> Any:
    """``value`` with the named tensor replaced by ``new`` (same container type)."""
    pos = _position(spec, value)
    if pos is None:
        return new
    if isinstance(value, Mapping):
        out = value.__class__(**value) if hasattr(value, "to_tuple") else dict(value)
        out[pos] = new
        return out
    items = list(value)
    items[pos] = new
    return type(value)(items) if isinstance(value, list) else tuple(items)


def _register(module: nn.Module, spec: HookSpec, on_tensor: Callable, *, replaces: bool):
    """Register a hook calling ``on_tensor(tensor)``; if ``replaces``, its result is spliced in."""
    if spec.slot == "output":

        def fwd_hook(_mod, _args, output):
            result = on_tensor(select_tensor(spec, output))
            return replace_tensor(spec, output, result) if replaces else None

        return module.register_forward_hook(fwd_hook)

    def pre_hook(_mod, args, kwargs):
        holder, in_args = (args, True) if _tensor_positions(args) else (kwargs, False)
        result = on_tensor(select_tensor(spec, holder))
        if not replaces:
            return None
        new = replace_tensor(spec, holder, result)
        return (new, kwargs) if in_args else (args, new)

    return module.register_forward_pre_hook(pre_hook, with_kwargs=True)


class Capture:
    """Activations (and gradients) recorded at hook points; filled inside ``capture``.

    ``cap[name]`` is the activation of the latest forward pass, detached. ``cap.grads[name]``
    is the gradient flowing back into that activation after ``backward()``.
    """

    def __init__(self, model: nn.Module, names: list[str], grads: bool, stop_early: bool):
        self.model = model
        self.names = names
        self.acts: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self._want_grads = grads
        self._stop_early = stop_early and not grads
        self._fired: set[str] = set()
        self._handles: list = []

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.acts:
            raise KeyError(
                f"no activation recorded for {name!r}; recorded: {sorted(self.acts)} "
                f"(requested: {self.names})"
            )
        return self.acts[name]

    def __contains__(self, name: str) -> bool:
        return name in self.acts

    def run(self, *args, **kwargs):
        """Run the model; returns its output, or None when the pass was stopped early."""
        try:
            return self.model(*args, **kwargs)
        except StopForward:
            return None

    def _on_tensor(self, name: str) -> Callable[[torch.Tensor], None]:
        def record(tensor: torch.Tensor) -> None:
            self.acts[name] = tensor.detach()
            if self._want_grads:
                self._track_grad(name, tensor)
            self._fired.add(name)
            if self._stop_early and len(self._fired) == len(self.names):
                raise StopForward

        return record

    def _track_grad(self, name: str, tensor: torch.Tensor) -> None:
        if not tensor.requires_grad and tensor.is_leaf and tensor.is_floating_point():
            tensor.requires_grad_(True)
        if tensor.requires_grad:
            tensor.register_hook(lambda g, n=name: self.grads.__setitem__(n, g.detach()))

    def _attach(self) -> None:
        def reset(_mod, _args):
            self._fired.clear()

        self._handles.append(self.model.register_forward_pre_hook(reset))
        for name in self.names:
            spec = parse_hook_spec(name)
            module = get_module(self.model, spec.module_path)
            self._handles.append(_register(module, spec, self._on_tensor(name), replaces=False))

    def _detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


@contextlib.contextmanager
def capture(
    model, hook_points: str | list[str], *, grads: bool = False, stop_early: bool = True
) -> Iterator[Capture]:
    """Record activations at ``hook_points`` during the forward passes inside the block.

    Args:
        model: a ``ModelHandle`` or any ``nn.Module``.
        hook_points: names or globs (see :func:`hiddenlens.hook_points`).
        grads: also record the gradient of whatever is backpropagated inside the block;
            implies a full forward pass.
        stop_early: abort the forward pass once every requested point has fired.
    """
    module = unwrap_model(model)
    names = resolve_hook_points(module, hook_points)
    cap = Capture(module, names, grads, stop_early)
    cap._attach()
    try:
        yield cap
    except StopForward:
        pass
    finally:
        cap._detach()


@contextlib.contextmanager
def patch(model, replacements: Mapping[str, Callable[[torch.Tensor], torch.Tensor]]):
    """Replace the activation at each hook point by ``fn(activation)`` inside the block.

    ``fn`` must return a tensor of the same shape; gradients flow through it.
    """
    module = unwrap_model(model)
    if not replacements:
        raise ValueError("patch() needs at least one {hook_point: fn} entry")
    handles = []
    try:
        for pattern, fn in replacements.items():
            if not callable(fn):
                raise TypeError(f"patch value for {pattern!r} must be callable, got {fn!r}")
            for name in resolve_hook_points(module, pattern):
                spec = parse_hook_spec(name)
                target = get_module(module, spec.module_path)
                handles.append(_register(target, spec, _checked(name, fn), replaces=True))
        yield module
    finally:
        for handle in handles:
            handle.remove()


def _checked(name: str, fn: Callable) -> Callable[[torch.Tensor], torch.Tensor]:
    def apply(tensor: torch.Tensor) -> torch.Tensor:
        new = fn(tensor)
        if not isinstance(new, torch.Tensor) or new.shape != tensor.shape:
            got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
            raise ValueError(
                f"patch function for {name!r} returned {got}; expected a tensor of shape "
                f"{tuple(tensor.shape)}"
            )
        return new

    return apply
