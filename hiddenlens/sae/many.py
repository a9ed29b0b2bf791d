"""Many SAEs in one pass: every SAE of a group trained from the same batch reads.

``train_many(store, [(hook, SAEConfig, TrainConfig), ...])`` reads each shuffled batch once
(all the hooks the group needs, in one ``store.batches`` call) and gives every SAE its
slice of it; each SAE keeps its own optimizer, dead-latent counters, log, non-finite row
accounting and checkpoints, so each result is bit-for-bit the SAE that ``train`` returns
alone with the same seed and batches. The batch stream is shared, so the runs of a group
must agree on what defines it: ``batch_size``, ``seed``, ``total_tokens`` and
``checkpoint_every`` (everything else — shape, architecture, lr, sparsity — may differ).
Resuming picks the newest checkpoint step that every run of the group has written.
Under torchrun every rank reads its slice of each global batch, as ``train`` does.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

from hiddenlens._threads import torch_threads
from hiddenlens.sae import registry
from hiddenlens.sae.checkpoint import STATE
from hiddenlens.sae.run import _batch_stream, _init_from_data, _Position, _Run
from hiddenlens.sae.trainer import _finish, _new_run, _resume, _train_on

logger = logging.getLogger(__name__)
#: TrainConfig fields that define the shared batch stream of a group.
SHARED = ("batch_size", "seed", "total_tokens", "checkpoint_every")


def run_name(hook: str, cfg) -> str:
    """A directory name for one SAE of a group: hook, architecture, size (and k)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", hook)
    k = f"_k{cfg.k}" if cfg.k is not None else ""
    return f"{safe}__{cfg.architecture}_{cfg.d_sae}{k}"


def _check_group(runs: list[_Run]) -> None:
    first = runs[0].cfg
    for r in runs[1:]:
        diff = [f for f in SHARED if getattr(r.cfg, f) != getattr(first, f)]
        if diff:
            raise ValueError(
                f"train_many: the SAEs of one pass must share {list(SHARED)}; "
                f"{r.hook!r} ({r.sae_cfg.architecture}) differs in {diff}"
            )
        if r.cfg.device != first.device:
            raise ValueError(f"train_many: every SAE must train on one device, got {r.cfg.device}")


def _common_checkpoint(runs: list[_Run]) -> int | None:
    """The newest step at which every run has a complete checkpoint (None: none)."""
    steps = None
    for r in runs:
        ck = Path(r.out_dir) / "checkpoints" if r.out_dir else None
        have = {int(p.name[5:]) for p in ck.glob("step_*") if (p / STATE).exists()} if ck and ck.is_dir() else set()  # fmt: skip
        steps = have if steps is None else steps & have
    return max(steps) if steps else None


def train_many(store, specs, *, out_dir=None, progress: bool = False, resume: bool = True):
    """Train one SAE per ``(hook, SAEConfig, TrainConfig)`` of ``specs`` in one pass over
    the data; returns the SAEs in the order of ``specs``.

    With ``out_dir`` each SAE is saved (and checkpointed) in ``out_dir / run_name(hook,
    cfg)``, as ``train(..., out_dir=...)`` would.
    """
    specs = list(specs)
    if not specs:
        raise ValueError("train_many needs at least one (hook, SAEConfig, TrainConfig)")
    names = [run_name(h, c) for h, c, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"train_many: two specs describe the same SAE: {names}")
    runs = [
        _new_run(store, h, c, t, Path(out_dir) / n if out_dir else None)
        for (h, c, t), n in zip(specs, names)
    ]
    _check_group(runs)
    step = _common_checkpoint(runs) if resume and out_dir else None
    for r in runs:
        if step is None or not _resume(r, Path(r.out_dir) / "checkpoints" / f"step_{step:08d}"):
            _init_from_data(r)
    threads = runs[0].cfg.num_threads
    with contextlib.nullcontext() if threads is None else torch_threads(threads, blas=False):
        _loop_many(runs, progress)
    return [_finish(r) for r in runs]


def _loop_many(runs: list[_Run], progress: bool) -> None:
    from tqdm.auto import tqdm

    lead = runs[0]
    hooks: list[str] = []
    needs = [registry.get(r.sae_cfg.architecture).training_hooks(r.sae_cfg, r.hook) for r in runs]
    for hs in needs:
        hooks += [h for h in hs if h not in hooks]
    n_steps = lead.cfg.n_steps
    bar = tqdm(total=n_steps * len(runs), initial=sum(r.step for r in runs),
               disable=not progress or lead.rank != 0, desc=f"{len(runs)} SAEs")  # fmt: skip
    pos = _Position(lead.epoch, lead.batch_in_epoch)
    for batch in _batch_stream(lead.store, hooks, lead.cfg, pos, lead.rank, lead.world):
        by_hook = dict(zip(hooks, batch if isinstance(batch, (tuple, list)) else [batch]))
        for r, hs in zip(runs, needs):
            if r.step >= n_steps:
                continue
            r.epoch, r.batch_in_epoch = pos.epoch, pos.batch_in_epoch
            pair = by_hook[hs[1]] if len(hs) > 1 else None
            _train_on(r, by_hook[hs[0]], pair, bar)
        if all(r.step >= n_steps for r in runs):
            break
    bar.close()
