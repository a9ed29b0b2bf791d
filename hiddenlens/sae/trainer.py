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
from hiddenlens.sae import registry
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
from hiddenlens.store.source import sized_source

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


def _data(run: _Run):
    """Endless (x, grad|None) batches of the local slice, resuming at the saved position."""
    cfg = run.cfg
    local = cfg.batch_size // run.world
    hooks = registry.get(run.sae_cfg.architecture).training_hooks(run.sae_cfg, run.hook)
    while True:
        it = run.store.batches(
            hooks if len(hooks) > 1 else hooks[0],
            local,
            shuffle=True,
            seed=cfg.seed + run.epoch,
            rank=run.rank,
            world_size=run.world,
            drop_last=True,
            interleave=True,  # ranks split each global batch: DDP sees single-process batches
            start_batch=run.batch_in_epoch,  # resume at the checkpointed data position
        )
        n = run.batch_in_epoch
        for batch in it:
            n += 1
            run.batch_in_epoch = n
            yield (batch[0], batch[1]) if isinstance(batch, (tuple, list)) else (batch, None)
        if n == 0:
            raise ValueError(f"store yields no full batch of {local} rows for {run.hook!r}")
        run.epoch += 1
        run.batch_in_epoch = 0


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


def _step(run: _Run, x, pair, dead):
    """One optimizer step; returns (output, fired mask reduced over ranks).

    pair: the second store tensor, passed as ``grad=`` or ``target=`` by ``pair_role``."""
    sae, opt, cfg = run.sae, run.opt, run.cfg
    l1 = cfg.l1_coefficient * (
        min(1.0, (run.step + 1) / cfg.l1_warmup_steps) if cfg.l1_warmup_steps else 1.0
    )
    coefs = {"l1": l1, "aux": cfg.aux_coefficient, "aux_k": cfg.aux_k}
    for group in opt.param_groups:
        group["lr"] = cfg.lr * lr_factor(run.step, cfg.n_steps, cfg)
    role = type(sae).pair_role or "grad"
    out = sae(x, coefs=coefs, dead_mask=dead, **{role: pair})
    loss = out.losses["loss"]
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {float(loss)} at step {run.step}; lower lr")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if run.world > 1:
        for p in sae.parameters():
            if p.grad is not None:
                _all_reduce(p.grad).div_(run.world)
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


def _resume(run: _Run) -> bool:
    ck = latest_checkpoint(Path(run.out_dir) / "checkpoints") if run.out_dir else None
    if ck is None:
        return False
    saved = read_json(ck / "state.json")
    check_compatible(saved, run.sae_cfg.to_dict(), run.cfg.to_dict(), run.hook, run.world)
    st, tensors = load_checkpoint(ck, sae=run.sae, optimizer=run.opt)
    run.restore(st, tensors)
    torch.set_rng_state(tensors["rng"])
    logger.info("resumed from %s", ck)
    return True


def _checkpoint(run: _Run) -> None:
    if run.rank != 0:
        return
    save_checkpoint(
        Path(run.out_dir) / "checkpoints",
        sae=run.sae,
        optimizer=run.opt,
        tensors={**run.counters(), "rng": torch.get_rng_state()},
        state={
            **run.progress(),
            "hook_point": run.hook,
            "world_size": run.world,
            "sae_config": run.sae_cfg.to_dict(),
            "train_config": run.cfg.to_dict(),
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
    the newest one. store: anything :func:`hiddenlens.store.as_source` accepts (an
    ``ActivationStore``, a dict of arrays, ...); architectures that read more than the hook
    (gradient_topk: ``f"{hook_point}#grad"``) name them in ``store_hooks``.
    """
    run = _new_run(store, hook_point, cfg, train_cfg, out_dir)
    if not (resume and _resume(run)):
        _init_from_data(run)
    with (
        contextlib.nullcontext()
        if run.cfg.num_threads is None
        else torch_threads(run.cfg.num_threads, blas=False)
    ):
        _loop(run, progress)
    return _finish(run)


def _new_run(store, hook_point, cfg, train_cfg, out_dir) -> _Run:
    sae_cfg = SAEConfig.from_dict(cfg) if isinstance(cfg, dict) else cfg
    tcfg = train_cfg or TrainConfig()
    if not isinstance(sae_cfg, SAEConfig) or not isinstance(tcfg, TrainConfig):
        raise TypeError("cfg must be an SAEConfig (or dict) and train_cfg a TrainConfig")
    store = sized_source(store, hook_point, sae_cfg.d_in)  # the source, of the SAE's width
    rank, world = _dist()
    if tcfg.batch_size % world:
        raise ValueError(f"batch_size={tcfg.batch_size} is not divisible by world_size={world}")
    sae_cfg = dataclasses.replace(sae_cfg, hook_point=sae_cfg.hook_point or hook_point)
    for h in registry.get(sae_cfg.architecture).training_hooks(sae_cfg, hook_point)[1:]:
        store.d(h)  # every store hook the architecture reads is there, before any work
    if sae_cfg.output_hook is not None and sae_cfg.d_out is None:  # a transcoder's output
        sae_cfg = dataclasses.replace(sae_cfg, d_out=int(store.d(sae_cfg.output_hook)))
    if sae_cfg.output_hook is not None:
        sized_source(store, sae_cfg.output_hook, sae_cfg.d_out, "the transcoder has d_out")
    torch.manual_seed(tcfg.seed)
    sae = build_sae(sae_cfg, seed=tcfg.seed).to(tcfg.device).train()
    if hasattr(sae, "threshold_lr"):
        sae.threshold_lr = tcfg.batchtopk_threshold_lr
    opt = Adam(sae.parameters(), lr=tcfg.lr, betas=tcfg.betas, eps=tcfg.eps)
    return _Run(sae, opt, store, hook_point, sae_cfg, tcfg, out_dir, rank, world)


def _loop(run: _Run, progress: bool) -> None:
    from tqdm.auto import tqdm

    cfg, n_steps = run.cfg, run.cfg.n_steps
    bar = tqdm(
        total=n_steps,
        initial=run.step,
        disable=not progress or run.rank != 0,
        desc=f"sae {run.hook}",
    )
    data = _data(run)
    while run.step < n_steps:
        x, p = next(data)
        x = x.to(cfg.device, torch.float32) * run.scale
        if p is not None and type(run.sae).pair_role == "target":
            p = p.to(cfg.device, torch.float32) * run.out_scale  # the rows to reconstruct
        elif p is not None:
            p = p.to(cfg.device, torch.float32) / run.scale  # d loss / d(scale * x)
        kept = _finite_rows(run, x, p)
        if kept is None:
            continue
        x, p = kept
        dead = run.since_fired >= cfg.dead_tokens
        out, fired = _step(run, x, p, dead)
        run.since_fired += int(_all_reduce(torch.tensor(float(x.shape[0]))))
        run.since_fired[fired] = 0
        run.fired_count += _fired_counts(out, run.sae_cfg.d_sae)
        run.step += 1
        if run.step % cfg.log_every == 0 or run.step == n_steps:
            target = p if type(run.sae).pair_role == "target" else x
            _log_row(run, target, out, dead, bar)
        bar.update(1)
        if run.out_dir and cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0:
            _checkpoint(run)
    bar.close()


def _log_row(run: _Run, x, out, dead, bar) -> None:
    row = {
        "step": run.step,
        "loss": float(out.losses["loss"].detach()),
        "fvu": _fvu(x, out.recon.detach()),
        "l0": float(out.l0),
        "dead_frac": float(dead.float().mean()),
        "rows_dropped": run.rows_dropped,
    }
    run.log.append(row)
    bar.set_postfix(
        loss=f"{row['loss']:.4g}",
        fvu=f"{row['fvu']:.3f}",
        l0=f"{row['l0']:.1f}",
        dead=f"{100 * row['dead_frac']:.1f}%",
    )


@torch.no_grad()
def _fired_counts(out, d_sae: int) -> torch.Tensor:
    if out.active is not None:
        on = out.values.detach() > 0
        c = torch.bincount(out.active.cols[on], minlength=d_sae)
    else:
        c = (out.latents_dense.detach() > 0).sum(0)
    return _all_reduce(c.to(torch.float64))


def _finish(run: _Run) -> BaseSAE:
    sae = run.sae
    if type(sae).pair_role == "target":
        sae.fold_scales(run.scale, run.out_scale)
    else:
        sae.fold_scale(run.scale)
    sae.eval()
    seen = max(run.rows_seen - run.rows_dropped, 1)
    sae.feature_density_ = (run.fired_count / seen).float()
    sae.train_log_ = run.log
    sae.n_skipped_batches_ = run.n_skipped
    sae.nonfinite_rows_ = run.rows_dropped
    sae.rows_seen_ = run.rows_seen
    if run.rows_dropped:
        logger.warning(
            "dropped %d non-finite row(s) of %d read from %r",
            run.rows_dropped,
            run.rows_seen,
            run.hook,
        )
    if run.out_dir and run.rank == 0:
        out = Path(run.out_dir)
        save_sae(sae, out, sparsity=sae.feature_density_)
        write_json(
            out / "train_config.json",
            {"sae": run.sae_cfg.to_dict(), "train": run.cfg.to_dict(), "scale": run.scale,
             "out_scale": run.out_scale},
        )  # fmt: skip
        write_json(out / "train_log.json", {"log": run.log, **_drops(run)})
    return sae


def _drops(run: _Run) -> dict[str, int]:
    return {
        "n_skipped": run.n_skipped,
        "nonfinite_rows": run.rows_dropped,
        "rows_seen": run.rows_seen,
    }


def train_info(sae: BaseSAE) -> dict[str, Any]:
    """The training log attached by :func:`train` (empty for a loaded SAE): ``log``,
    ``n_skipped`` (batches with no finite row), ``nonfinite_rows`` (rows dropped) and
    ``rows_seen``."""
    return {
        "log": getattr(sae, "train_log_", []),
        "n_skipped": getattr(sae, "n_skipped_batches_", 0),
        "nonfinite_rows": getattr(sae, "nonfinite_rows_", 0),
        "rows_seen": getattr(sae, "rows_seen_", 0),
    }
