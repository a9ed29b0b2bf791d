"""Resumable training checkpoints: safetensors for tensors, JSON for everything else.

A checkpoint directory ``step_<8-digit step>`` holds ``sae.safetensors`` (training-space
weights and buffers), ``optim.safetensors`` (Adam moments),
``trainer.safetensors`` (dead-latent counters, RNG state) and ``state.json`` (step, data
position, scale, configs). ``state.json`` is written last, so a directory without it is
an interrupted write and is ignored. Nothing is pickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hiddenlens._io import write_json
from hiddenlens.sae.io import read_json, read_safetensors, write_safetensors

STATE = "state.json"
# Config fields that may differ between the interrupted and the resumed run.
_FREE_TRAIN_FIELDS = {
    "checkpoint_every", "log_every", "on_nonfinite", "device", "num_threads", "encoder_dtype"
}  # fmt: skip


def save_checkpoint(directory: Path, *, sae, optimizer, tensors: dict, state: dict) -> Path:
    """Write one checkpoint; returns its directory."""
    d = Path(directory) / f"step_{state['step']:08d}"
    d.mkdir(parents=True, exist_ok=True)
    write_safetensors(d / "sae.safetensors", dict(sae.state_dict()))
    write_safetensors(d / "optim.safetensors", optimizer.state_tensors())
    write_safetensors(d / "trainer.safetensors", tensors)
    write_json(d / STATE, {**state, "optimizer": optimizer.state_json()}, sort_keys=True)
    return d


def latest_checkpoint(directory: Path) -> Path | None:
    """Newest complete checkpoint under ``directory`` (None if there is none)."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    done = sorted(p for p in directory.glob("step_*") if (p / STATE).exists())
    return done[-1] if done else None


def check_compatible(state: dict, sae_cfg: dict, train_cfg: dict, hook: str, world: int):
    """Raise ValueError naming the first mismatch between a checkpoint and this run."""
    where = f"checkpoint at step {state.get('step')}"
    if state.get("hook_point") != hook:
        raise ValueError(f"incompatible {where}: hook {state.get('hook_point')!r} != {hook!r}")
    if state.get("sae_config") != sae_cfg:
        raise ValueError(f"incompatible {where}: SAE config {state.get('sae_config')} != {sae_cfg}")
    saved = {
        k: v for k, v in (state.get("train_config") or {}).items() if k not in _FREE_TRAIN_FIELDS
    }
    now = {k: v for k, v in train_cfg.items() if k not in _FREE_TRAIN_FIELDS}
    if saved != now:
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        raise ValueError(f"incompatible {where}: training config differs in {diff}")
    if state.get("world_size") != world:
        raise ValueError(
            f"incompatible {where}: written with world_size={state.get('world_size')}, "
            f"resumed with {world}"
        )


def load_checkpoint(d: Path, *, sae, optimizer) -> tuple[dict[str, Any], dict]:
    """Restore ``sae`` and ``optimizer`` in place; returns (state, trainer tensors)."""
    d = Path(d)
    state = read_json(d / STATE)
    weights = read_safetensors(d / "sae.safetensors")
    try:
        sae.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise ValueError(f"incompatible checkpoint {d}: {e}") from e
    optimizer.load_state(read_safetensors(d / "optim.safetensors"), state.pop("optimizer"))
    return state, read_safetensors(d / "trainer.safetensors")
