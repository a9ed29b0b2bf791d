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
from pathlib import Path
from typing import Any

import torch

from hiddenlens._threads import torch_threads
from hiddenlens.hooks.device import resolve_device
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
from hiddenlens.sae.run import (  # noqa: F401  (geometric_median is public here too)
    _all_reduce,
    _data,
    _dist,
    _finite_rows,
    _init_from_data,
    _Run,
    geometric_median,
)
from hiddenlens.store.source import sized_source

logger = logging.getLogger(__name__)


def lr_factor(step: int, n_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up, constant, then linear decay to 0 over the final fraction."""
    warm = min(1.0, (step + 1) / cfg.lr_warmup_steps) if cfg.lr_warmup_steps else 1.0
    start = n_steps * (1.0 - cfg.lr_decay_fraction)
    decay = 1.0 if step < start else max(0.0, (n_steps - step) / max(n_steps - start, 1e-9))
    return warm * decay


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


def _resume(run: _Run, ck: Path | None = None) -> bool:
    """Restore ``run`` from checkpoint ``ck`` (default: its newest); False if there is none."""
    if ck is None:
        ck = latest_checkpoint(Path(run.out_dir) / "checkpoints") if run.out_dir else None
    if ck is None or not (Path(ck) / "state.json").exists():
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
    tcfg = dataclasses.replace(tcfg, device=str(resolve_device(tcfg.device)))  # cuda:LOCAL_RANK
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
    with torch.no_grad():  # a resumed run loads its own weights over this start
        sae.W_enc.mul_(tcfg.encoder_start(type(sae)))
    if tcfg.encoder_dtype != "float32":
        if not type(sae).low_precision_selection:
            raise ValueError(
                f"encoder_dtype={tcfg.encoder_dtype!r} needs a TopK or TopK-transcoder SAE, "
                f"got architecture {sae_cfg.architecture!r} (use encoder_dtype='float32')"
            )
        sae.selection_dtype = getattr(torch, tcfg.encoder_dtype)
    if hasattr(sae, "threshold_lr"):
        sae.threshold_lr = tcfg.batchtopk_threshold_lr
    opt = Adam(sae.parameters(), lr=tcfg.lr, betas=tcfg.betas, eps=tcfg.eps)
    return _Run(sae, opt, store, hook_point, sae_cfg, tcfg, out_dir, rank, world)


def _loop(run: _Run, progress: bool) -> None:
    from tqdm.auto import tqdm

    n_steps = run.cfg.n_steps
    bar = tqdm(
        total=n_steps,
        initial=run.step,
        disable=not progress or run.rank != 0,
        desc=f"sae {run.hook}",
    )
    data = _data(run)
    while run.step < n_steps:
        x, p = next(data)
        _train_on(run, x, p, bar)
    bar.close()


def _train_on(run: _Run, x: torch.Tensor, p: torch.Tensor | None, bar) -> bool:
    """One step of ``run`` on a raw batch (x, pair); False when no row of it was finite."""
    cfg = run.cfg
    x = x.to(cfg.device, torch.float32) * run.scale
    if p is not None and type(run.sae).pair_role == "target":
        p = p.to(cfg.device, torch.float32) * run.out_scale  # the rows to reconstruct
    elif p is not None:
        p = p.to(cfg.device, torch.float32) / run.scale  # d loss / d(scale * x)
    kept = _finite_rows(run, x, p)
    if kept is None:
        return False
    x, p = kept
    dead = run.since_fired >= cfg.dead_tokens
    out, fired = _step(run, x, p, dead)
    run.since_fired += int(_all_reduce(torch.tensor(float(x.shape[0]))))
    run.since_fired[fired] = 0
    run.fired_count += _fired_counts(out, run.sae_cfg.d_sae)
    run.step += 1
    if run.step % cfg.log_every == 0 or run.step == cfg.n_steps:
        target = p if type(run.sae).pair_role == "target" else x
        _log_row(run, target, out, dead, bar)
    bar.update(1)
    if run.out_dir and cfg.checkpoint_every and run.step % cfg.checkpoint_every == 0:
        _checkpoint(run)
    return True


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
