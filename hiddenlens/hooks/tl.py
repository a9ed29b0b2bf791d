"""TransformerLens models on disk: the ``tl:`` directory layout, its saver and loader.

A ``tl:`` directory (``hiddenlens.hooks.save_hooked_transformer`` writes one) holds:

- ``tl_config.json``: ``{"format": "hiddenlens.transformerlens", "version": 1,
  "config": {...}}`` where ``config`` is ``HookedTransformerConfig.to_dict()`` with the
  dtype as a string (``"float32"``) and the machine-specific ``device`` left out;
- ``model.safetensors``: the model's ``state_dict()`` (TransformerLens parameter names);
- optionally the tokenizer's files (``tokenizer.json``, ``tokenizer_config.json``, …) as
  written by ``tokenizer.save_pretrained``.

``load_model("tl:<dir>")`` reads such a directory; ``load_model("tl:<name>")`` loads a model
TransformerLens knows by name (``tl:gpt2``) from the local Hugging Face cache (offline).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from hiddenlens._io import atomic_write, read_json, write_json

logger = logging.getLogger(__name__)

CONFIG_FILE = "tl_config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT = "hiddenlens.transformerlens"
VERSION = 1
_DROP = ("device",)  # where a model ran is not part of what it is


def is_tl_dir(path: Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def _config_dict(cfg) -> dict[str, Any]:
    out = {}
    for key, value in cfg.to_dict().items():
        if key in _DROP:
            continue
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        out[key] = value
    return out


def save_hooked_transformer(model, path) -> Path:
    """Write a ``HookedTransformer`` (and its tokenizer, if any) in the ``tl:`` layout."""
    from safetensors.torch import save_file
    from transformer_lens import HookedTransformer

    if not isinstance(model, HookedTransformer):
        raise TypeError(f"save_hooked_transformer needs a HookedTransformer, got {type(model)!r}")
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(
        path / WEIGHTS_FILE, lambda tmp: save_file(state, tmp, metadata={"format": FORMAT})
    )
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(str(path))
    config = {"format": FORMAT, "version": VERSION, "config": _config_dict(model.cfg)}
    write_json(path / CONFIG_FILE, config)  # last: a directory without it is unfinished
    return path


def _read_config(path: Path):
    from transformer_lens import HookedTransformerConfig

    raw = read_json(path / CONFIG_FILE)
    if raw.get("format") != FORMAT or raw.get("version") != VERSION:
        raise ValueError(
            f"{path / CONFIG_FILE} is not a hiddenlens TransformerLens config (format "
            f"{raw.get('format')!r} version {raw.get('version')!r}; expected {FORMAT!r} "
            f"version {VERSION})"
        )
    cfg = dict(raw["config"])
    if isinstance(cfg.get("dtype"), str):
        cfg["dtype"] = getattr(torch, cfg["dtype"])
    cfg.pop("n_params", None)  # derived from the shape fields
    return HookedTransformerConfig.from_dict(cfg)


def load_tl_dir(path: Path, device: torch.device | None):
    """The ``HookedTransformer`` saved in ``path`` by :func:`save_hooked_transformer`."""
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer

    path = Path(path).expanduser()
    if not (path / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{path} has {CONFIG_FILE} but no {WEIGHTS_FILE}")
    cfg = _read_config(path)
    cfg.device = str(device or "cpu")
    tokenizer = None
    if (path / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = HookedTransformer(cfg, tokenizer=tokenizer, move_to_device=False)
    model.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=True)
    return model.to(cfg.device, print_details=False).eval()  # TL would print()


def load_tl_pretrained(name: str, device: torch.device | None):
    """A model TransformerLens knows by name, from the local Hugging Face cache only."""
    from transformer_lens import HookedTransformer

    try:
        model = HookedTransformer.from_pretrained(name, device=str(device or "cpu"))
    except (OSError, ValueError) as err:
        reason = str(err) if len(str(err)) < 300 else str(err)[:300] + " ..."
        raise FileNotFoundError(
            f"cannot load 'tl:{name}': it is not a directory holding {CONFIG_FILE} and "
            f"TransformerLens could not load {name!r} from the local cache ({reason}); "
            "hiddenlens works offline: save one with hiddenlens.hooks.save_hooked_transformer "
            "or download the weights first"
        ) from err
    return model.eval()
