"""Saving and loading SAEs: the SAELens (v6) and EleutherAI sparsify directory formats.

SAELens: ``cfg.json`` + ``sae_weights.safetensors`` (W_enc [d_in, d_sae], b_enc, W_dec
[d_sae, d_in], b_dec, plus ``threshold`` for JumpReLU and ``b_gate``/``r_mag``/``b_mag``
for Gated) + optional ``sparsity.safetensors`` (key ``sparsity``: log10 feature density).
sparsify: ``cfg.json`` (d_in, k, num_latents | expansion_factor, ...) + ``sae.safetensors``
(``encoder.weight`` [num_latents, d_in], ``encoder.bias``, ``W_dec`` [num_latents, d_in],
``b_dec``). Only JSON and safetensors are read: nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hiddenlens.sae.base import BaseSAE, build_sae
from hiddenlens.sae.config import SAEConfig

CFG_FILENAME = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SPARSITY_FILENAME = "sparsity.safetensors"
SPARSIFY_WEIGHTS = "sae.safetensors"
# SAELens reads configs older than 6.0 with a different schema; we write the 6.x one.
SAELENS_FORMAT_VERSION = "6.0.0"

_TO_SAELENS = {
    "relu": "standard",
    "topk": "topk",
    "gradient_topk": "topk",
    "batchtopk": "jumprelu",
    "jumprelu": "jumprelu",
    "gated": "gated",
}
_FROM_SAELENS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu", "gated": "gated"}


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    _atomic_write_bytes(Path(path), json.dumps(obj, indent=2, sort_keys=True).encode())


def write_safetensors(path: Path, tensors: dict[str, Tensor], metadata=None) -> None:
    from safetensors.torch import save

    data = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _atomic_write_bytes(Path(path), save(data, metadata=metadata))


def read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise ValueError(f"cannot read safetensors file {path}: {e}") from e


def read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(obj).__name__}")
    return obj


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hiddenlens")
    except PackageNotFoundError:
        return "unknown"


def saelens_cfg(sae: BaseSAE) -> dict[str, Any]:
    cfg = sae.cfg
    hl_version = _library_version()

    out: dict[str, Any] = {
        "architecture": _TO_SAELENS[cfg.architecture],
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "sae_lens_training_version": SAELENS_FORMAT_VERSION,
            "hook_name": cfg.hook_point,
            "model_name": cfg.model_id,
            "hiddenlens": {"version": hl_version, "config": cfg.to_dict()},
        },
    }
    if out["architecture"] == "topk":
        out["k"] = cfg.k
        out["rescale_acts_by_decoder_norm"] = False
    return out


def save_sae(sae: BaseSAE, path, *, sparsity: Tensor | None = None) -> Path:
    """Write ``sae`` to directory ``path`` in SAELens format; returns the path.

    sparsity: optional per-latent firing frequency [d_sae] (stored as log10, as SAELens).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.float() for k, v in sae.sparsity_params().items()}
    write_safetensors(path / SAELENS_WEIGHTS, tensors)
    if sparsity is not None:
        log_sparsity = torch.log10(torch.as_tensor(sparsity, dtype=torch.float32) + 1e-10)
        write_safetensors(path / SPARSITY_FILENAME, {"sparsity": log_sparsity})
    # cfg.json last: a directory without it is not a finished SAE.
    write_json(path / CFG_FILENAME, saelens_cfg(sae))
    return path


def _int_field(d: dict, name: str, where: Path) -> int:
    v = d.get(name)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{where}: field {name!r} must be an int, got {v!r}")
    return v


def _load_saelens(path: Path, raw: dict) -> BaseSAE:
    arch = raw.get("architecture", "standard")
    if arch not in _FROM_SAELENS:
        raise ValueError(
            f"{path}: SAELens architecture {arch!r} is not supported; "
            f"supported: {sorted(_FROM_SAELENS)}"
        )
    if raw.get("normalize_activations", "none") not in ("none", None):
        raise ValueError(
            f"{path}: normalize_activations={raw['normalize_activations']!r} is not folded "
            "into the weights; only 'none' is supported"
        )
    meta = raw.get("metadata") or {}
    ours = (meta.get("hiddenlens") or {}).get("config")
    if ours and _TO_SAELENS.get(ours.get("architecture")) == arch:
        cfg = SAEConfig.from_dict(ours)
        if cfg.architecture == "batchtopk":
            cfg = SAEConfig.from_dict({**ours, "architecture": "jumprelu"})
    else:
        cfg = SAEConfig(
            d_in=_int_field(raw, "d_in", path),
            d_sae=_int_field(raw, "d_sae", path),
            architecture=_FROM_SAELENS[arch],
            k=raw.get("k") if arch == "topk" else None,
            apply_b_dec_to_input=bool(raw.get("apply_b_dec_to_input", True)),
            hook_point=meta.get("hook_name") or raw.get("hook_name"),
            model_id=meta.get("model_name") or raw.get("model_name"),
        )
    sae = build_sae(cfg)
    tensors = read_safetensors(path / SAELENS_WEIGHTS)
    tensors.pop("finetuning_scaling_factor", None)
    sae.load_exported({k: v.float() for k, v in tensors.items()})
    if arch == "topk" and raw.get("rescale_acts_by_decoder_norm", False):
        _fold_decoder_norm(sae)
    return sae


@torch.no_grad()
def _fold_decoder_norm(sae: BaseSAE) -> None:
    """SAELens TopK with rescale_acts_by_decoder_norm: pre * ||d_i||, decode z / ||d_i||.

    Folding n_i = ||d_i|| into W_enc, b_enc (times n) and W_dec (divided by n) gives the
    same encode/decode with unit decoder rows.
    """
    n = sae.W_dec.norm(dim=1).clamp_min(1e-8)
    sae.W_enc.mul_(n)
    sae.b_enc.mul_(n)
    sae.W_dec.div_(n[:, None])


def _load_sparsify(path: Path, raw: dict) -> BaseSAE:
    d_in = _int_field(raw, "d_in", path)
    k = _int_field(raw, "k", path)
    n = raw.get("num_latents") or d_in * int(raw.get("expansion_factor", 0))
    if not n:
        raise ValueError(f"{path}: cfg.json needs num_latents or expansion_factor")
    if raw.get("transcode") or raw.get("skip_connection"):
        raise ValueError(f"{path}: sparsify transcoders / skip connections are not supported")
    t = read_safetensors(path / SPARSIFY_WEIGHTS)
    need = {"encoder.weight", "encoder.bias", "W_dec", "b_dec"}
    if not need <= set(t):
        raise ValueError(f"{path}/{SPARSIFY_WEIGHTS} lacks tensors {sorted(need - set(t))}")
    sae = build_sae(SAEConfig(d_in=d_in, d_sae=int(n), architecture="topk", k=k))
    sae.load_exported(
        {
            "W_enc": t["encoder.weight"].float().t(),
            "b_enc": t["encoder.bias"].float(),
            "W_dec": t["W_dec"].float(),
            "b_dec": t["b_dec"].float(),
        }
    )
    return sae


def load(path) -> BaseSAE:
    """Load an SAE directory written by hiddenlens, SAELens (v6 format) or sparsify.

    Raises FileNotFoundError for a missing directory / file and ValueError for a
    malformed one. Never unpickles.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no SAE directory at {path}")
    if not (path / CFG_FILENAME).exists():
        raise FileNotFoundError(f"{path} has no {CFG_FILENAME}: not an SAE directory")
    raw = read_json(path / CFG_FILENAME)
    if (path / SAELENS_WEIGHTS).exists():
        sae = _load_saelens(path, raw)
    elif (path / SPARSIFY_WEIGHTS).exists():
        sae = _load_sparsify(path, raw)
    else:
        raise FileNotFoundError(
            f"{path} has neither {SAELENS_WEIGHTS} (SAELens) nor {SPARSIFY_WEIGHTS} (sparsify)"
        )
    return sae.eval()


def load_sparsity(path) -> Tensor | None:
    """Per-latent firing frequency from ``sparsity.safetensors`` (None if absent)."""
    p = Path(path) / SPARSITY_FILENAME
    if not p.exists():
        return None
    return 10 ** read_safetensors(p)["sparsity"]
