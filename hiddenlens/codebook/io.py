"""Save and load attached codebooks (safetensors + JSON, no pickle).

Layout of a saved directory::

    codebook.json          {"format": "hiddenlens.codebook", "version": 1,
                            "hook_points": [...], "layers": {hook: CodebookConfig fields}}
    codebooks.safetensors  one tensor per hook point, key = hook point, shape [n_codes, d]
    model.safetensors      (optional) the fine-tuned model weights

Recorded code activations ({hook: int array [n_rows, k]}) are saved with :func:`save_codes`
as one safetensors file, key = hook point, aligned with the activation store's rows.

Codebook features follow "Codebook Features: Sparse and Discrete Interpretability for
Neural Networks" (Tamkin, Taufeeque & Goodman, 2023).
"""

from __future__ import annotations

from pathlib import Path

import torch

from hiddenlens import _io
from hiddenlens.codebook.attach import CodebookModel, attach
from hiddenlens.hooks.names import unwrap_model

CONFIG_FILE = "codebook.json"
CODES_FILE = "codebooks.safetensors"
MODEL_FILE = "model.safetensors"
FORMAT = "hiddenlens.codebook"
VERSION = 1


def save(cb: CodebookModel, path, *, include_model: bool | None = None) -> Path:
    """Write the codebooks of ``cb`` to directory ``path``; returns it.

    include_model: also write the model weights; default: only when fine-tuning changed them.
    """
    from safetensors.torch import save_file

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    if include_model is None:
        include_model = cb._snapshot is not None
    tensors = {h: layer.codes.detach().cpu().contiguous() for h, layer in cb.layers.items()}
    _io.atomic_write(out / CODES_FILE, lambda p: save_file(tensors, p))
    if include_model:
        # Tied weights share storage; safetensors refuses shared tensors, so clone each.
        state = {k: v.detach().cpu().clone().contiguous() for k, v in cb.model.state_dict().items()}
        _io.atomic_write(out / MODEL_FILE, lambda p: save_file(state, p))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "hook_points": cb.hook_points,
        "layers": {h: layer.config.to_dict() for h, layer in cb.layers.items()},
        "includes_model": bool(include_model),
    }
    _io.write_json(out / CONFIG_FILE, meta, indent=2)
    return out


def load(model, path, *, load_model_weights: bool = True) -> CodebookModel:
    """Attach the codebooks saved in ``path`` to ``model`` and return the handle.

    Model weights saved alongside are loaded too (``load_model_weights``); the previous
    weights are snapshotted so that ``detach()`` restores them.
    """
    from safetensors.torch import load_file

    src = Path(path)
    if not (src / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"{src / CONFIG_FILE} not found; is {src} a saved codebook?")
    meta = _io.read_json(src / CONFIG_FILE)
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{src}: unsupported format {meta.get('format')!r} v{meta.get('version')}")
    tensors = load_file(str(src / CODES_FILE))
    hooks = meta["hook_points"]
    configs = meta["layers"]
    first = configs[hooks[0]]
    if any(
        configs[h]["n_codes"] != first["n_codes"] or configs[h]["k"] != first["k"] for h in hooks
    ):
        # attach() takes one shape; attach hook by hook when shapes differ.
        raise ValueError("codebooks of different shapes in one file are not supported")
    cb = attach(
        model,
        hooks,
        first["n_codes"],
        first["k"],
        similarity=first["similarity"],
        loss=first["loss"],
        beta=first["beta"],
        d={h: configs[h]["d"] for h in hooks},
    )
    with torch.no_grad():
        for hook, layer in cb.layers.items():
            layer.codes.copy_(tensors[hook].to(layer.codes))
    if meta.get("includes_model") and load_model_weights:
        cb.snapshot_weights()
        state = load_file(str(src / MODEL_FILE))
        unwrap_model(model).load_state_dict(state)
    return cb


def save_codes(codes: dict, path) -> Path:
    """Write recorded codes {hook point: int array [n_rows, k]} to one safetensors file."""
    import numpy as np
    from safetensors.numpy import save_file

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {h: np.ascontiguousarray(c, dtype=np.int64) for h, c in codes.items()}
    _io.atomic_write(out, lambda p: save_file(arrays, p))
    return out


def load_codes(path) -> dict:
    """Read codes written by :func:`save_codes` -> {hook point: int64 array [n_rows, k]}."""
    from safetensors.numpy import load_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"no codes file at {path}")
    return dict(load_file(str(path)))
