"""The state of one SAE training run and the data it reads.

``_Run`` holds everything a run carries (the SAE, its optimizer, data position, scales,
counters, log), so the trainer's helpers take one object; this module also reads the
batches (resuming at the saved position), sets the decoder bias and input scale from the
store's statistics (checked first: null statistics mean non-finite rows), and drops
non-finite rows, counted, with an error past ``max_nonfinite_fraction``. Used by
``hiddenlens.sae.trainer`` (one run) and ``hiddenlens.sae.many`` (several runs sharing
their batch reads).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiddenlens.sae import registry
from hiddenlens.sae.base import BaseSAE
from hiddenlens.sae.config import SAEConfig, TrainConfig
from hiddenlens.sae.optim import Adam

logger = logging.getLogger("hiddenlens.sae.trainer")


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
class _Run:
    """Everything one training run carries: the SAE, its optimizer, data and progress.

    One object instead of the same ten arguments threaded through every helper; what a
    checkpoint restores is ``progress()`` plus the two dead-latent counters.
    """

    sae: BaseSAE
    opt: Adam
    store: Any
    hook: str
    sae_cfg: SAEConfig
    cfg: TrainConfig
    out_dir: Path | None = None
    rank: int = 0
    world: int = 1
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    n_skipped: int = 0  # batches without a single finite row (on any rank)
    rows_seen: int = 0
    rows_dropped: int = 0  # non-finite rows removed from batches
    scale: float = 1.0
    out_scale: float = 1.0  # a transcoder's output-row scale
    log: list[dict[str, float]] = field(default_factory=list)
    since_fired: torch.Tensor | None = None  # [d_sae] rows since each latent last fired
    fired_count: torch.Tensor | None = None  # [d_sae] total firings (float64)

    _PROGRESS = (
        "step",
        "epoch",
        "batch_in_epoch",
        "n_skipped",
        "rows_seen",
        "rows_dropped",
        "scale",
        "out_scale",
        "log",
    )

    def __post_init__(self) -> None:
        d_sae = self.sae_cfg.d_sae
        self.since_fired = torch.zeros(d_sae, dtype=torch.long)
        self.fired_count = torch.zeros(d_sae, dtype=torch.float64)

    def progress(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._PROGRESS}

    def restore(self, saved: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        for k in self._PROGRESS:
            if k in saved:  # rows_seen / rows_dropped are absent in older checkpoints
                setattr(self, k, saved[k])
        self.since_fired.copy_(tensors["since_fired"])
        self.fired_count.copy_(tensors["fired_count"])

    def counters(self) -> dict[str, torch.Tensor]:
        return {"since_fired": self.since_fired, "fired_count": self.fired_count}


@dataclass
class _Position:
    """Where a batch stream is: epoch and batches consumed in it."""

    epoch: int = 0
    batch_in_epoch: int = 0


def _batch_stream(store, hooks: list[str], cfg: TrainConfig, pos, rank: int, world: int):
    """Endless shuffled batches of the local slice of ``hooks`` (a tensor for one hook, a
    tuple for several), starting and kept at ``pos`` (``epoch``, ``batch_in_epoch``)."""
    local = cfg.batch_size // world
    while True:
        it = store.batches(
            hooks if len(hooks) > 1 else hooks[0],
            local,
            shuffle=True,
            seed=cfg.seed + pos.epoch,
            rank=rank,
            world_size=world,
            drop_last=True,
            interleave=True,  # ranks split each global batch: DDP sees single-process batches
            start_batch=pos.batch_in_epoch,  # resume at the checkpointed data position
        )
        n = pos.batch_in_epoch
        for batch in it:
            n += 1
            pos.batch_in_epoch = n
            yield batch
        if n == 0:
            raise ValueError(f"store yields no full batch of {local} rows for {hooks}")
        pos.epoch += 1
        pos.batch_in_epoch = 0


def _data(run: _Run):
    """Endless (x, pair|None) batches of one run, resuming at its saved position."""
    hooks = registry.get(run.sae_cfg.architecture).training_hooks(run.sae_cfg, run.hook)
    for batch in _batch_stream(run.store, hooks, run.cfg, run, run.rank, run.world):
        yield (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)


def _finite_stats(stats: dict) -> dict:
    """Keep only the usable store statistics (a NaN row poisons running means)."""
    out = {}
    if "mean" in stats and np.isfinite(np.asarray(stats["mean"], dtype=np.float64)).all():
        out["mean"] = np.asarray(stats["mean"], dtype=np.float64)
    if "mean_norm" in stats and math.isfinite(float(stats["mean_norm"])):
        out["mean_norm"] = float(stats["mean_norm"])
    return out


def _check_stats(store, hook: str, cfg: TrainConfig) -> dict:
    """The store's statistics, checked before any training: null (non-finite) statistics
    mean the store holds non-finite rows."""
    raw = store.stats(hook) or {}
    stats = _finite_stats(raw)
    if {"mean", "mean_norm"} & set(raw) and len(stats) < len({"mean", "mean_norm"} & set(raw)):
        msg = f"the store's statistics of {hook!r} are null/non-finite: it holds NaN/inf rows"
        if cfg.on_nonfinite == "raise":
            raise ValueError(msg + " (TrainConfig.on_nonfinite='raise')")
        logger.warning(
            "%s; they will be dropped from every batch and b_dec / the input scale "
            "come from a finite sample",
            msg,
        )
    return stats


def _scale_and_mean(run: _Run, hook: str, d: int) -> tuple[float, torch.Tensor | None]:
    """(input scale sqrt(d) / E||x||, the mean row for b_dec) of ``hook``, same on every rank."""
    cfg = run.cfg
    stats = _check_stats(run.store, hook, cfg)
    sample = None
    if cfg.b_dec_init == "geometric_median" or len(stats) < 2:
        it = run.store.batches(
            hook, min(cfg.batch_size, 8192), shuffle=True, seed=cfg.seed + 1_000_003, rank=0,
            world_size=1,
        )  # fmt: skip
        sample = next(iter(it)).float()
        sample = sample[torch.isfinite(sample).all(1)]  # non-finite rows are never used
        if sample.shape[0] == 0:
            raise ValueError(f"no finite rows in the first batch of {hook!r}")
    mean_norm = stats.get("mean_norm")
    if mean_norm is None:
        mean_norm = float(sample.norm(dim=1).mean())
    if cfg.normalize_activations and not (math.isfinite(mean_norm) and mean_norm > 0):
        raise ValueError(f"cannot normalise activations of {hook!r}: mean norm {mean_norm}")
    scale = math.sqrt(d) / mean_norm if cfg.normalize_activations else 1.0
    if cfg.b_dec_init == "mean":
        mean = torch.as_tensor(stats["mean"]) if "mean" in stats else sample.mean(0)
    elif cfg.b_dec_init == "geometric_median":
        mean = geometric_median(sample)
    else:
        mean = None
    return scale, mean


@torch.no_grad()
def _init_from_data(run: _Run) -> None:
    """Set b_dec and the input (and a transcoder's output) scale."""
    sae, cfg = run.sae, run.sae_cfg
    run.scale, mean = _scale_and_mean(run, run.hook, cfg.d_in)
    if type(sae).pair_role == "target":  # b_dec lives in the output space
        run.out_scale, mean = _scale_and_mean(run, cfg.output_hook, cfg.d_out or cfg.d_in)
    if mean is not None:
        out = run.out_scale if type(sae).pair_role == "target" else run.scale
        sae.b_dec.copy_(mean.float() * out)


def _finite_rows(run: _Run, x: torch.Tensor, g: torch.Tensor | None):
    """Drop the rows holding NaN/inf (counted); None when a rank is left with no row.

    Raises with ``on_nonfinite='raise'`` at the first such row, and with 'skip' once the
    dropped fraction of all rows read passes ``max_nonfinite_fraction`` (a broken store is
    an error, not an endless run).
    """
    ok = torch.isfinite(x).all(1)
    if g is not None:
        ok &= torch.isfinite(g).all(1)
    n_ok = int(ok.sum())
    # [dropped rows, rows, ranks left with no finite row], summed over ranks
    c = _all_reduce(
        torch.tensor([x.shape[0] - n_ok, x.shape[0], int(n_ok == 0)], dtype=torch.float64)
    )
    bad, total, empty = (int(v) for v in c.tolist())
    run.rows_seen += total
    if bad == 0:
        return x, g
    where = f"training batch {run.batch_in_epoch - 1} of epoch {run.epoch} of {run.hook!r}"
    if run.cfg.on_nonfinite == "raise":
        raise ValueError(f"non-finite values in {where} (TrainConfig.on_nonfinite='raise')")
    if run.rows_dropped == 0:
        warnings.warn(
            f"non-finite values in {where}: {bad} row(s) dropped; later drops are "
            "counted in train_info",
            RuntimeWarning,
            stacklevel=4,
        )
    run.rows_dropped += bad
    logger.info("dropped %d non-finite row(s) in %s", bad, where)
    frac = run.rows_dropped / max(run.rows_seen, 1)
    if frac > run.cfg.max_nonfinite_fraction:
        raise ValueError(
            f"{run.rows_dropped} of {run.rows_seen} rows read from {run.hook!r} are non-finite "
            f"({frac:.1%}), more than max_nonfinite_fraction={run.cfg.max_nonfinite_fraction}"
        )
    if empty:
        run.n_skipped += 1
        return None
    return x[ok], (g[ok] if g is not None else None)
