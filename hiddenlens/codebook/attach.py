"""Insert codebook bottlenecks into a model at named hook points.

"Codebook Features" (Tamkin, Taufeeque & Goodman, 2023) places a codebook after every
block (or MLP / attention output) of a network and fine-tunes it. Here the codebooks live
*outside* the model, placed with :func:`hiddenlens.hooks.attach` at the hook points, so the
model's parameters and ``state_dict`` are untouched and :meth:`CodebookModel.detach`
returns the model to its original behaviour bit-exactly (weights trained with
``finetune(model_lr>0)`` are restored from a snapshot).

Hook point names follow ``hiddenlens.hooks``: TransformerLens hook names
(``blocks.0.hook_resid_post``), otherwise module paths from ``named_modules()``, optionally
suffixed ``:input`` / ``:output.N`` / ``:input.N``; globs expand.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from collections.abc import Iterator, Mapping

import torch
from torch import nn

from hiddenlens.codebook.layer import CodebookLayer
from hiddenlens.hooks import attach as attach_hooks
from hiddenlens.hooks import parse_hook_spec, resolve_hook_points
from hiddenlens.hooks.names import get_module, unwrap_model

logger = logging.getLogger(__name__)

# model -> {hook point: CodebookModel}; weak so that a dropped model takes its entry along.
_ATTACHED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def infer_dim(model: nn.Module, hook_point: str) -> int | None:
    """Best-effort width of the activation at ``hook_point`` without running the model."""
    spec = parse_hook_spec(hook_point)
    path, where = spec.module_path, spec.slot
    module = get_module(model, path)
    if isinstance(module, nn.Linear):
        return module.in_features if where == "input" else module.out_features
    if isinstance(module, nn.Embedding):
        return module.embedding_dim if where == "output" else None
    cfg = getattr(model, "cfg", None)  # TransformerLens: residual / attn_out / mlp_out hooks
    if cfg is not None and any(t in path for t in ("resid", "attn_out", "mlp_out", "embed")):
        return int(cfg.d_model)
    hf_cfg = getattr(model, "config", None)
    if hf_cfg is not None and getattr(hf_cfg, "hidden_size", None) and where == "output":
        return int(hf_cfg.hidden_size)
    return None


class CodebookModel:
    """A model with codebooks attached; call it like the model.

    Attributes: ``model`` (the wrapped nn.Module), ``hook_points`` (list[str]), ``layers``
    (dict hook point -> CodebookLayer).
    """

    def __init__(self, model: nn.Module, layers: dict[str, CodebookLayer]) -> None:
        self.model = model
        self.layers = dict(layers)
        self.hook_points = list(layers)
        self._attachment = None
        self._snapshot: dict[str, torch.Tensor] | None = None
        self.attached = False

    def _attach(self) -> CodebookModel:
        registry = _ATTACHED.setdefault(self.model, {})
        clash = [h for h in self.hook_points if h in registry]
        if clash:
            raise ValueError(f"codebooks already attached at {clash}; detach them first")
        self._attachment = attach_hooks(self.model, self.layers)  # all or nothing
        registry.update({hook: self for hook in self.hook_points})
        self.attached = True
        return self

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def __repr__(self) -> str:
        return f"CodebookModel({type(self.model).__name__}, {self.layers})"

    def parameters(self) -> Iterator[nn.Parameter]:
        """The code vectors of every codebook."""
        for layer in self.layers.values():
            yield layer.codes

    def codebook_loss(self) -> torch.Tensor:
        """Sum of the layers' auxiliary losses from the latest forward pass."""
        return sum((layer.last_loss for layer in self.layers.values()), torch.zeros(()))

    @contextlib.contextmanager
    def disabled(self):
        """Run the original (codebook-free) computation inside the block."""
        states = {h: layer.enabled for h, layer in self.layers.items()}
        try:
            for layer in self.layers.values():
                layer.enabled = False
            yield self
        finally:
            for h, layer in self.layers.items():
                layer.enabled = states[h]

    def snapshot_weights(self) -> None:
        """Remember the model's weights (once) so that ``detach`` can restore them."""
        if self._snapshot is None:
            self._snapshot = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def detach(self, *, restore_weights: bool = True) -> nn.Module:
        """Remove the codebooks; with ``restore_weights`` also undo model fine-tuning."""
        if self._attachment is not None:
            self._attachment.detach()
            self._attachment = None
        registry = _ATTACHED.get(self.model, {})
        for hook in self.hook_points:
            if registry.get(hook) is self:
                del registry[hook]
        if restore_weights and self._snapshot is not None:
            with torch.no_grad():
                state = self.model.state_dict()
                for key, value in self._snapshot.items():
                    state[key].copy_(value)
            self._snapshot = None
        self.attached = False
        return self.model

    def save(self, path, *, include_model: bool | None = None):
        """Write codebooks (safetensors + JSON); see :func:`hiddenlens.codebook.save`."""
        from hiddenlens.codebook.io import save

        return save(self, path, include_model=include_model)


def attached_codebooks(model) -> dict[str, CodebookModel]:
    """{hook point: CodebookModel} currently attached to ``model``."""
    return dict(_ATTACHED.get(unwrap_model(model), {}))


def attach(
    model,
    hook_points,
    n_codes: int,
    k: int = 1,
    *,
    similarity: str = "cosine",
    loss: str = "autoencoder",
    beta: float = 0.25,
    d: int | Mapping[str, int] | None = None,
    init=None,
    kmeans_iter: int = 100,
    seed: int = 0,
) -> CodebookModel:
    """Attach a codebook of ``n_codes`` codes (top-``k``) at each hook point.

    model: nn.Module, TransformerLens HookedTransformer or a ModelHandle.
    d: activation width (int or {hook: int}); inferred from ``init`` or the model if None.
    init: k-means initialisation data: {hook: array [n, d]} or an ActivationStore.
    """
    module = unwrap_model(model)
    hooks = resolve_hook_points(module, hook_points)
    if len(set(hooks)) != len(hooks):
        raise ValueError(f"hook points repeat: {hooks}")
    taken = [h for h in hooks if h in _ATTACHED.get(module, {})]
    if taken:
        raise ValueError(f"codebooks already attached at {taken}; detach them first")
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    layers = {}
    for i, hook in enumerate(hooks):
        acts = _init_rows(init, hook)
        width = _width(module, hook, d, acts)
        layer = CodebookLayer(width, n_codes, k, similarity, loss, beta, seed=seed + i)
        if acts is not None:
            if acts.shape[-1] != width:
                raise ValueError(
                    f"init rows for {hook!r} have d={acts.shape[-1]}, expected {width}"
                )
            layer.init_kmeans(acts, n_iter=kmeans_iter, seed=seed + i)
        layers[hook] = layer.to(device)
    return CodebookModel(module, layers)._attach()


def _init_rows(init, hook: str) -> torch.Tensor | None:
    if init is None:
        return None
    if hasattr(init, "rows"):  # ActivationStore
        rows = init.rows(hook)
    elif isinstance(init, Mapping):
        if hook not in init:
            raise ValueError(f"init has no rows for {hook!r}; it has {sorted(init)}")
        rows = init[hook]
    else:
        raise TypeError(f"init must be a mapping or an ActivationStore, got {type(init)!r}")
    rows = torch.as_tensor(rows, dtype=torch.float32)
    return rows.reshape(-1, rows.shape[-1])


def _width(module: nn.Module, hook: str, d, acts: torch.Tensor | None) -> int:
    """The activation width from ``d``, the init rows and the model; they must agree."""
    if isinstance(d, Mapping):
        d = d.get(hook)
    known = {
        "d": None if d is None else int(d),
        "init rows": None if acts is None else int(acts.shape[-1]),
        "the model": infer_dim(module, hook),
    }
    found = {k: v for k, v in known.items() if v is not None}
    if not found:
        raise ValueError(f"cannot infer the width at {hook!r}: pass d= or init=")
    if len(set(found.values())) > 1:
        raise ValueError(f"dimension mismatch at {hook!r}: {found}")
    return next(iter(found.values()))
