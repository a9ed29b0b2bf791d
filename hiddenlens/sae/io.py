"""Saving and loading SAEs: the SAELens (v6) and EleutherAI sparsify directory formats.

SAELens: ``cfg.json`` + ``sae_weights.safetensors`` (W_enc [d_in, d_sae], b_enc, W_dec
[d_sae, d_in], b_dec, plus ``threshold`` for JumpReLU and ``b_gate``/``r_mag``/``b_mag``
for Gated) + optional ``sparsity.safetensors`` (key ``sparsity``: log10 feature density).
sparsify: ``cfg.json`` (d_in, k, num_latents | expansion_factor, ...) + ``sae.safetensors``
(``encoder.weight`` [num_latents, d_in], ``encoder.bias``, ``W_dec`` [num_latents, d_in],
``b_dec``). Only JSON and safetensors are read: nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hiddenlens import _io
from hiddenlens.sae import registry
from hiddenlens.sae.base import BaseSAE, build_sae
from hiddenlens.sae.config import SAEConfig

CFG_FILENAME = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SPARSITY_FILENAME = "sparsity.safetensors"
SPARSIFY_WEIGHTS = "sae.safetensors"
# Configs without a sae_lens_version >= 6 are read by SAELens with its pre-6.0 schema.
SAELENS_FORMAT_VERSION = "6.0.0"


def write_json(path: Path, obj: Any) -> None:
    """JSON through the one atomic writer (NaN -> null), keys sorted as SAELens writes them."""
    _io.write_json(path, obj, sort_keys=True)


def write_safetensors(path: Path, tensors: dict[str, Tensor], metadata=None) -> None:
    from safetensors.torch import save

    data = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    _io.write_bytes(Path(path), save(data, metadata=metadata))


def read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types on corrupt files
        raise ValueError(f"cannot read safetensors file {path}: {e}") from e


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header (no tensor is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # corrupt header, truncated file, not safetensors
        raise ValueError(f"cannot read safetensors file {path}: {e}") from e


def check_shapes(path: Path, found: dict, expected: dict[str, tuple[int, ...]]) -> None:
    """Every expected tensor is in the file header with its shape (before any allocation)."""
    missing = sorted(set(expected) - set(found))
    if missing:
        raise ValueError(f"{path} lacks tensors {missing} (has {sorted(found)})")
    for name, shape in expected.items():
        if tuple(found[name]) != tuple(shape):
            raise ValueError(
                f"{path}: tensor {name!r} has shape {tuple(found[name])} but cfg.json implies "
                f"{tuple(shape)}"
            )


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` (ValueError naming the file otherwise)."""
    obj = _io.read_json(path)
    if not isinstance(obj, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(obj).__name__}")
    return obj


def _installed_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def saelens_cfg(sae: BaseSAE) -> dict[str, Any]:
    """SAELens 6.x ``cfg.json`` of ``sae``; provenance is real: the installed sae_lens version
    (when sae_lens is installed) and hiddenlens's own version under ``metadata.hiddenlens``."""
    from hiddenlens import __version__

    cfg = sae.cfg
    facts = registry.facts(cfg.architecture)
    out: dict[str, Any] = {
        "architecture": facts["saelens_architecture"],
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_training_version": None,  # trained by hiddenlens, not by SAELens
            "hook_name": cfg.hook_point,
            "model_name": cfg.model_id,
            "hiddenlens": {
                "version": __version__,
                "config": cfg.to_dict(),
                "saelens_format": SAELENS_FORMAT_VERSION,
            },
        },
    }
    saelens_version = _installed_version("sae-lens")
    if saelens_version is not None:
        out["metadata"]["sae_lens_version"] = saelens_version
    if cfg.output_hook is not None or cfg.d_out is not None:  # a transcoder
        out["d_out"] = cfg.d_out or cfg.d_in
        out["metadata"]["hook_name_out"] = cfg.output_hook
    if facts["topk_family"] and out["architecture"] == "topk":
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


def _field(raw: dict, name: str, types: tuple, default: Any, where: Path) -> Any:
    """``raw[name]`` (or ``default`` when absent), required to be one of ``types``."""
    v = raw.get(name, default)
    ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
    if not ok:
        kinds = "/".join("null" if t is type(None) else t.__name__ for t in types)
        raise ValueError(f"{where}: field {name!r} must be {kinds}, got {v!r}")
    return v


def _int_field(d: dict, name: str, where: Path) -> int:
    return _field(d, name, (int,), None, where)


def expected_shapes(cfg: SAEConfig) -> dict[str, tuple[int, ...]]:
    """Shapes of the exported tensors of an SAE with ``cfg``, computed on the meta device
    (nothing is allocated, however large ``d_sae`` is)."""
    with torch.device("meta"):
        sae = build_sae(cfg)
    return {k: tuple(v.shape) for k, v in sae.sparsity_params().items()}


def _saelens_config(path: Path, raw: dict) -> SAEConfig:
    """The SAEConfig a SAELens ``cfg.json`` describes (hiddenlens's own config if present)."""
    arch = _field(raw, "architecture", (str,), "standard", path)
    meta = _field(raw, "metadata", (dict, type(None)), None, path) or {}
    ours = (
        (meta.get("hiddenlens") or {}).get("config")
        if isinstance(meta.get("hiddenlens"), dict)
        else None
    )
    if isinstance(ours, dict) and isinstance(ours.get("architecture"), str):
        facts = registry.facts(ours["architecture"])
        if facts["saelens_architecture"] == arch:
            try:
                return SAEConfig.from_dict(
                    {**ours, "architecture": facts["inference_architecture"]}
                )
            except (TypeError, ValueError) as e:
                raise ValueError(f"{path}: metadata.hiddenlens.config is invalid: {e}") from None
    name = registry.from_saelens(arch)
    if name is None:
        raise ValueError(
            f"{path}: SAELens architecture {arch!r} is not supported; "
            f"supported: {registry.saelens_names()}"
        )
    if _field(raw, "normalize_activations", (str, type(None)), "none", path) not in ("none", None):
        raise ValueError(
            f"{path}: normalize_activations={raw['normalize_activations']!r} is not folded "
            "into the weights; only 'none' is supported"
        )
    topk = registry.facts(name)["topk_family"]
    str_or_none = (str, type(None))
    transcoder = {}
    if getattr(registry.get(name), "pair_role", None) == "target":
        transcoder = {
            "d_out": _int_field(raw, "d_out", path),
            "output_hook": _field(meta, "hook_name_out", str_or_none, None, path),
        }
    try:
        return SAEConfig(
            **transcoder,
            d_in=_int_field(raw, "d_in", path),
            d_sae=_int_field(raw, "d_sae", path),
            architecture=name,
            k=_int_field(raw, "k", path) if topk else None,
            apply_b_dec_to_input=_field(raw, "apply_b_dec_to_input", (bool,), True, path),
            hook_point=_field(meta, "hook_name", str_or_none, None, path)
            or _field(raw, "hook_name", str_or_none, None, path),
            model_id=_field(meta, "model_name", str_or_none, None, path)
            or _field(raw, "model_name", str_or_none, None, path),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None


def _load_saelens(path: Path, raw: dict) -> BaseSAE:
    cfg = _saelens_config(path, raw)
    rescale = _field(raw, "rescale_acts_by_decoder_norm", (bool,), False, path)
    weights = path / SAELENS_WEIGHTS
    check_shapes(weights, safetensors_shapes(weights), expected_shapes(cfg))
    sae = build_sae(cfg)
    tensors = read_safetensors(weights)
    tensors.pop("finetuning_scaling_factor", None)
    sae.load_exported({k: v.float() for k, v in tensors.items()})
    if cfg.architecture == "topk" and rescale:
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
    n = _field(raw, "num_latents", (int, type(None)), None, path) or d_in * _field(
        raw, "expansion_factor", (int,), 0, path
    )
    if not n or n < 0:
        raise ValueError(f"{path}: cfg.json needs a positive num_latents or expansion_factor")
    transcode = _field(raw, "transcode", (bool,), False, path)
    skip = _field(raw, "skip_connection", (bool,), False, path)
    if skip and not transcode:
        raise ValueError(f"{path}: a sparsify skip connection without transcode is not supported")
    weights = path / SPARSIFY_WEIGHTS
    found = safetensors_shapes(weights)
    d_out = tuple(found.get("W_dec", (0, d_in)))[-1] if transcode else d_in
    arch = ("topk_skip_transcoder" if skip else "topk_transcoder") if transcode else "topk"
    extra = {"d_out": d_out, "apply_b_dec_to_input": False} if transcode else {}
    try:
        cfg = SAEConfig(d_in=d_in, d_sae=int(n), architecture=arch, k=k, **extra)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    shapes = {"encoder.weight": (n, d_in), "encoder.bias": (n,), "W_dec": (n, d_out),
              "b_dec": (d_out,)}  # fmt: skip
    if skip:
        shapes["W_skip"] = (d_out, d_in)
    check_shapes(weights, found, shapes)
    t = read_safetensors(weights)
    sae = build_sae(cfg)
    tensors = {
        "W_enc": t["encoder.weight"].float().t(),
        "b_enc": t["encoder.bias"].float(),
        "W_dec": t["W_dec"].float(),
        "b_dec": t["b_dec"].float(),
    }
    if skip:
        tensors["W_skip"] = t["W_skip"].float()
    sae.load_exported(tensors)
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
