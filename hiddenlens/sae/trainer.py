"""Training SAEs on cached activations, on one process or data-parallel under torchrun.

Recipe (Gao et al. 2024; Conerly et al. 2024; Bricken et al. 2023): decoder bias at the
data mean or geometric median, encoder = decoder transpose, unit-norm decoder rows with
the parallel gradient component removed, Adam with linear LR warm-up and a final linear
decay, sparsity-penalty warm-up, dead latents = no firing for ``dead_tokens`` rows (fed to
AuxK), inputs scaled to E||x|| = sqrt(d_in) with the scale folded into the weights at the
end. Under ``torch.distributed`` each rank reads a disjoint slice of every global batch
and gradients are averaged with all-reduce, so a run equals the single-process run on the
same global batches.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiddenlens._threads import torch_threads
from hiddenlens.sae.base import BaseSAE, build_sae
from hiddenlens.sae.checkpoint import (
    check_compatible,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from hiddenlens.sae.config import SAEConfig, TrainConfig
from hiddenlens.sae.io import read_json, save_sae, write_json
from hiddenlens.sae.optim import Adam

logger = logging.getLogger(__name__)


def _dist() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    import torch.distributed as dist

    if _dist()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t


def lr_factor(step: int, n_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up, constant, then linear decay to 0 over the final fraction."""
    warm = min(1.0, (step + 1) / cfg.lr_warmup_steps) if cfg.lr_warmup_steps else 1.0
    start = n_steps * (1.0 - cfg.lr_decay_fraction)
    decay = 1.0 if step < start else max(0.0, (n_steps - step) / max(n_steps - start, 1e-9))
    return warm * decay


def geometric_median(x: torch.Tensor, n_iter: int = 50, tol: float = 1e-6) -> torch.Tensor:
    """Weiszfeld's algorithm: argmin_m sum_i ||x_i - m|| for rows x [n, d]."""
    m = x.mean(0)
    for _ in range(n_iter):
        w = 1.0 / (x - m).norm(dim=1).clamp_min(1e-8)
        new = (w[:, None] * x).sum(0) / w.sum()
        if (new - m).norm() <= tol * m.norm().clamp_min(1e-8):
            return new
        m = new
    return m


@dataclass
class _State:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    n_skipped: int = 0
    scale: float = 1.0
    log: list[dict[str, float]] = field(default_factory=list)


def _check_store(store, hook: str, sae_cfg: SAEConfig) -> None:
    for attr in ("batches", "d", "stats"):
        if not hasattr(store, attr):
            raise TypeError(f"store must provide .{attr}(...); got {type(store).__name__}")
    d = int(store.d(hook))
    if d != sae_cfg.d_in:
        raise ValueError(
            f"hook {hook!r} has d={d} in the store but the SAE has d_in={sae_cfg.d_in}"
        )


def _hooks_for(sae_cfg: SAEConfig, hook: str) -> list[str] | str:
    return [hook, f"{hook}#grad"] if sae_cfg.architecture == "gradient_topk" else hook


def _data(store, hook, sae_cfg, cfg: TrainConfig, state: _State, rank: int, world: int):
    """Endless (x, grad|None) batches of the local slice, resuming at the saved position."""
    local = cfg.batch_size // world
    while True:
        it = store.batches(
            _hooks_for(sae_cfg, hook),
            local,
            shuffle=True,
            seed=cfg.seed + state.epoch,
            rank=rank,
            world_size=world,
            drop_last=True,
            interleave=True,  # ranks split each global batch: DDP sees single-process batches
            start_batch=state.batch_in_epoch,  # resume at the checkpointed data position
        )
        n = state.batch_in_epoch
        for batch in it:
            n += 1
            state.batch_in_epoch = n
            yield (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        if n == 0:
            raise ValueError(f"store yields no full batch of {local} rows for {hook!r}")
        state.epoch += 1
        state.batch_in_epoch = 0


def _finite_stats(stats: dict) -> dict:
    """Keep only the usable store statistics (a NaN row poisons running means)."""
    out = {}
    if "mean" in stats and np.isfinite(np.asarray(stats["mean"], dtype=np.float64)).all():
        out["mean"] = np.asarray(stats["mean"], dtype=np.float64)
    if "mean_norm" in stats and math.isfinite(float(stats["mean_norm"])):
        out["mean_norm"] = float(stats["mean_norm"])
    return out


@torch.no_grad()
def _init_from_data(sae: BaseSAE, store, hook: str, cfg: TrainConfig) -> float:
    """Set b_dec and return the input scale (identical on every rank)."""
    stats = _finite_stats(store.stats(hook) or {})
    sample = None
    if cfg.b_dec_init == "geometric_median" or len(stats) < 2:
        it = store.batches(
            hook,
            min(cfg.batch_size, 8192),
            shuffle=True,
            seed=cfg.seed + 1_000_003,
            rank=0,
            world_size=1,
        )
        sample = next(iter(it)).float()
        sample = sample[torch.isfinite(sample).all(1)]  # non-finite rows are never used
        if sample.shape[0] == 0:
            raise ValueError(f"no finite rows in the first batch of {hook!r}")
    mean_norm = stats.get("mean_norm", None) or float(sample.norm(dim=1).mean())
    scale = math.sqrt(sae.cfg.d_in) / mean_norm if cfg.normalize_activations else 1.0
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"cannot normalise activations of {hook!r}: mean norm {mean_norm}")
    if cfg.b_dec_init == "mean":
        mean = torch.as_tensor(stats["mean"]) if "mean" in stats else sample.mean(0)
        sae.b_dec.copy_(mean.float() * scale)
    elif cfg.b_dec_init == "geometric_median":
        sae.b_dec.copy_(geometric_median(sample) * scale)
    return scale


def _batch_ok(
    x: torch.Tensor, g: torch.Tensor | None, cfg: TrainConfig, state: _State, hook: str
) -> bool:
    bad = torch.tensor(0.0 if bool(torch.isfinite(x).all()) else 1.0)
    if g is not None and not bool(torch.isfinite(g).all()):
        bad.fill_(1.0)
    if float(_all_reduce(bad, "max")) == 0.0:
        return True
    msg = f"non-finite values in training batch {state.step} of {hook!r}"
    if cfg.on_nonfinite == "raise":
        raise ValueError(msg + " (TrainConfig.on_nonfinite='raise')")
    warnings.warn(msg + "; batch skipped", RuntimeWarning, stacklevel=3)
    state.n_skipped += 1
    return False


def _step(sae, opt, x, g, dead, cfg: TrainConfig, state: _State, n_steps: int, world: int):
    """One optimizer step; returns (output, fired mask reduced over ranks)."""
    l1 = cfg.l1_coefficient * (
        min(1.0, (state.step + 1) / cfg.l1_warmup_steps) if cfg.l1_warmup_steps else 1.0
    )
    coefs = {"l1": l1, "aux": cfg.aux_coefficient, "aux_k": cfg.aux_k}
    for group in opt.param_groups:
        group["lr"] = cfg.lr * lr_factor(state.step, n_steps, cfg)
    out = sae(x, coefs=coefs, dead_mask=dead, grad=g)
    loss = out.losses["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {float(loss)} at step {state.step}; lower lr")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if world > 1:
        for p in sae.parameters():
            if p.grad is not None:
                _all_reduce(p.grad).div_(world)
    if cfg.unit_norm_decoder:
        sae.project_decoder_grad()
    opt.step()
    if cfg.unit_norm_decoder:
        sae.normalize_decoder()
    fired = _all_reduce(out.fired.to(torch.float32), "max") > 0
    return out, fired


def _fvu(x: torch.Tensor, recon: torch.Tensor) -> float:
    num = (x - recon).pow(2).sum()
    den = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
    return float(num / den)


def _resume(out_dir, sae, opt, sae_cfg, cfg, hook, world, state: _State, counters):
    ck = latest_checkpoint(Path(out_dir) / "checkpoints") if out_dir else None
    if ck is None:
        return False
    saved = read_json(ck / "state.json")
    check_compatible(saved, sae_cfg.to_dict(), cfg.to_dict(), hook, world)
    st, tensors = load_checkpoint(ck, sae=sae, optimizer=opt)
    state.step, state.epoch = st["step"], st["epoch"]
    state.batch_in_epoch, state.n_skipped = st["batch_in_epoch"], st["n_skipped"]
    state.scale, state.log = st["scale"], st.get("log", [])
    counters["since_fired"].copy_(tensors["since_fired"])
    counters["fired_count"].copy_(tensors["fired_count"])
    torch.set_rng_state(tensors["rng"])
    logger.info("resumed from %s", ck)
    return True


def _checkpoint(out_dir, sae, opt, sae_cfg, cfg, hook, world, state: _State, counters):
    if _dist()[0] != 0:
        return
    save_checkpoint(
        Path(out_dir) / "checkpoints",
        sae=sae,
        optimizer=opt,
        tensors={**counters, "rng": torch.get_rng_state()},
        state={
            "step": state.step,
            "epoch": state.epoch,
            "batch_in_epoch": state.batch_in_epoch,
            "n_skipped": state.n_skipped,
            "scale": state.scale,
            "log": state.log,
            "hook_point": hook,
            "world_size": world,
            "sae_config": sae_cfg.to_dict(),
            "train_config": cfg.to_dict(),
        },
    )


def train(
    store,
    hook_point: str,
    cfg: SAEConfig | dict,
    train_cfg: TrainConfig | None = None,
    *,
    out_dir=None,
    progress: bool = False,
    resume: bool = True,
) -> BaseSAE:
    """Train an SAE on ``store`` rows of ``hook_point``; returns it with the scale folded in.

    cfg: the SAE shape (``SAEConfig`` or dict); train_cfg: the schedule (default
    ``TrainConfig()``). With ``out_dir`` the SAE is saved there in SAELens format, with
    ``train_config.json`` and ``train_log.json``, and checkpoints (every
    ``checkpoint_every`` steps) go to ``out_dir/checkpoints``; ``resume`` continues from
    the newest one. The store needs ``batches(hook, batch_size, *, shuffle, seed, rank,
    world_size, drop_last)``, ``d(hook)`` and ``stats(hook)``; gradient_topk also reads
    ``f"{hook_point}#grad"``.
    """
    sae_cfg = SAEConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    cfg = train_cfg or TrainConfig()
    if not isinstance(sae_cfg, SAEConfig) or not isinstance(cfg, TrainConfig):
        raise TypeError("cfg must be an SAEConfig (or dict) and train_cfg a TrainConfig")
    _check_store(store, hook_point, sae_cfg)
    rank, world = _dist()
    if cfg.batch_size % world:
        raise ValueError(f"batch_size={cfg.batch_size} is not divisible by world_size={world}")
    sae_cfg = dataclasses.replace(sae_cfg, hook_point=sae_cfg.hook_point or hook_point)
    torch.manual_seed(cfg.seed)
    sae = build_sae(sae_cfg, seed=cfg.seed).to(cfg.device).train()
    if hasattr(sae, "threshold_lr"):
        sae.threshold_lr = cfg.batchtopk_threshold_lr
    opt = Adam(sae.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)
    state = _State()
    counters = {
        "since_fired": torch.zeros(sae_cfg.d_sae, dtype=torch.long),
        "fired_count": torch.zeros(sae_cfg.d_sae, dtype=torch.float64),
    }
    if not (
        resume and _resume(out_dir, sae, opt, sae_cfg, cfg, hook_point, world, state, counters)
    ):
        state.scale = _init_from_data(sae, store, hook_point, cfg)
    with (
        contextlib.nullcontext()
        if cfg.num_threads is None
        else torch_threads(cfg.num_threads, blas=False)
    ):
        _loop(sae, opt, store, hook_point, sae_cfg, cfg, state, counters, out_dir, progress)
    return _finish(sae, sae_cfg, cfg, state, counters, out_dir)


def _loop(sae, opt, store, hook, sae_cfg, cfg, state, counters, out_dir, progress):
    from tqdm.auto import tqdm

    rank, world = _dist()
    n_steps = cfg.n_steps
    bar = tqdm(
        total=n_steps, initial=state.step, disable=not progress or rank != 0, desc=f"sae {hook}"
    )
    data = _data(store, hook, sae_cfg, cfg, state, rank, world)
    while state.step < n_steps:
        x, g = next(data)
        x = x.to(cfg.device, torch.float32) * state.scale
        if g is not None:
            g = g.to(cfg.device, torch.float32) / state.scale  # d loss / d(scale * x)
        if not _batch_ok(x, g, cfg, state, hook):
            continue
        dead = counters["since_fired"] >= cfg.dead_tokens
        out, fired = _step(sae, opt, x, g, dead, cfg, state, n_steps, world)
        counters["since_fired"] += cfg.batch_size
        counters["since_fired"][fired] = 0
        counters["fired_count"] += _fired_counts(out, sae_cfg.d_sae)
        state.step += 1
        if state.step % cfg.log_every == 0 or state.step == n_steps:
            row = {
                "step": state.step,
                "loss": float(out.losses["loss"].detach()),
                "fvu": _fvu(x, out.recon.detach()),
                "l0": float(out.l0),
                "dead_frac": float(dead.float().mean()),
            }
            state.log.append(row)
            bar.set_postfix(
                loss=f"{row['loss']:.4g}",
                fvu=f"{row['fvu']:.3f}",
                l0=f"{row['l0']:.1f}",
                dead=f"{100 * row['dead_frac']:.1f}%",
            )
        bar.update(1)
        if out_dir and cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
            _checkpoint(out_dir, sae, opt, sae_cfg, cfg, hook, world, state, counters)
    bar.close()


@torch.no_grad()
def _fired_counts(out, d_sae: int) -> torch.Tensor:
    if out.active is not None:
        on = out.values.detach() > 0
        c = torch.bincount(out.active.cols[on], minlength=d_sae)
    else:
        c = (out.latents_dense.detach() > 0).sum(0)
    return _all_reduce(c.to(torch.float64))


def _finish(sae, sae_cfg, cfg, state: _State, counters, out_dir) -> BaseSAE:
    sae.fold_scale(state.scale)
    sae.eval()
    seen = max(state.step * cfg.batch_size, 1)
    sae.feature_density_ = (counters["fired_count"] / seen).float()
    sae.train_log_ = state.log
    sae.n_skipped_batches_ = state.n_skipped
    if out_dir and _dist()[0] == 0:
        out = Path(out_dir)
        save_sae(sae, out, sparsity=sae.feature_density_)
        write_json(
            out / "train_config.json",
            {"sae": sae_cfg.to_dict(), "train": cfg.to_dict(), "scale": state.scale},
        )
        write_json(out / "train_log.json", {"log": state.log, "n_skipped": state.n_skipped})
    return sae


def train_info(sae: BaseSAE) -> dict[str, Any]:
    """The training log attached by :func:`train` (empty for a loaded SAE)."""
    return {
        "log": getattr(sae, "train_log_", []),
        "n_skipped": getattr(sae, "n_skipped_batches_", 0),
    }
