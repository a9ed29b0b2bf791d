"""Cache activations from several processes (``torchrun``) into one store.

Each rank caches a contiguous slice of the samples into its own sub-store
(``OUT/rank_000/``, ``OUT/rank_001/``, ...), each resumable on its own; when every rank is
done, rank 0 writes the top-level ``manifest.json`` that lists all ranks' shards in rank
order. Because the slices are contiguous and in order, the merged store has the rows,
metadata and statistics a single process would have written (``sample_idx`` stays global).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from hiddenlens.store import format as fmt
from hiddenlens.store.reader import ActivationStore
from hiddenlens.store.verify import load_npy

logger = logging.getLogger(__name__)


def rank_slice(n_samples: int, rank: int, world_size: int) -> tuple[int, int]:
    """[lo, hi) of the samples ``rank`` caches: contiguous, sizes differing by at most one."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return rank * n_samples // world_size, (rank + 1) * n_samples // world_size


def _world(rank: int | None, world_size: int | None) -> tuple[int, int]:
    if rank is not None and world_size is not None:
        return int(rank), int(world_size)
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # set by torchrun
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return 0, 1


def cache_activations_ranked(
    model: Any,
    data: Any,
    hook_points: str | list[str],
    out_dir: str | os.PathLike,
    *,
    rank: int | None = None,
    world_size: int | None = None,
    timeout_s: float = 24 * 3600,
    **kwargs: Any,
) -> ActivationStore:
    """``cache_activations`` split over ``world_size`` processes into one store.

    Call it from every rank (under ``torchrun`` the rank is read from torch.distributed or
    the ``RANK``/``WORLD_SIZE`` environment). Keyword arguments are those of
    :func:`hiddenlens.store.cache_activations` except ``max_rows``. Every rank returns the
    merged store once rank 0 has written it.
    """
    from hiddenlens.data import as_data
    from hiddenlens.store.writer import cache_activations

    source = as_data(
        data, text_column=kwargs.get("text_column", "text"), labels=kwargs.pop("labels", None)
    )
    rank, world = _world(rank, world_size)
    if world == 1:
        return cache_activations(model, source, hook_points, out_dir, **kwargs)
    if kwargs.get("max_rows") is not None:
        raise ValueError("max_rows is not supported when caching from several ranks")
    if source.length is None:
        raise ValueError(
            f"distributed caching needs data of known length; {source.description} is a stream"
        )
    lo, hi = rank_slice(source.length, rank, world)
    out = Path(out_dir).expanduser()
    if hi > lo:
        part = source.take(hi)  # each rank reads up to its slice and caches from lo
        cache_activations(
            model, part, hook_points, out / f"rank_{rank:03d}", first_sample=lo, **kwargs
        )
    parts = [
        out / f"rank_{r:03d}"
        for r in range(world)
        if rank_slice(source.length, r, world)[1] > rank_slice(source.length, r, world)[0]
    ]
    _wait_for([p / fmt.MANIFEST for p in parts], timeout_s)
    if rank == 0:
        merge_rank_stores(out, parts)
    _wait_for([out / fmt.MANIFEST], timeout_s)
    return ActivationStore.open(out)


def _wait_for(paths: list[Path], timeout_s: float) -> None:
    """Poll the file system (works with or without a process group)."""
    deadline = time.monotonic() + timeout_s
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            missing = [str(p) for p in paths if not p.exists()]
            raise TimeoutError(f"ranks did not finish within {timeout_s:.0f} s: {missing}")
        time.sleep(0.2)


def merge_rank_stores(out: Path, parts: list[Path]) -> Path:
    """Write ``out/manifest.json`` listing every part's shards, with merged statistics."""
    manifests = [fmt.Manifest.load(p / fmt.MANIFEST) for p in parts]
    first = manifests[0]
    for p, m in zip(parts, manifests):
        if set(m.hooks) != set(first.hooks) or m.meta.keys() != first.meta.keys():
            raise ValueError(f"rank store {p} has different hooks or metadata than {parts[0]}")
    shards, row_start = [], 0
    for p, m in zip(parts, manifests):
        for s in m.shards:
            shards.append(dict(s, name=f"{p.name}/{s['name']}", row_start=row_start))
            row_start += s["rows"]
    merged = fmt.Manifest(
        run=dict(first.run, ranks=len(parts)),
        hooks=first.hooks,
        meta=first.meta,
        n_rows=row_start,
        shards=shards,
        sample_stop=manifests[-1].sample_stop,
        complete=True,
    )
    for hook, info in merged.hooks.items():
        sums = [load_npy(out / s["name"] / info.stats_file) for s in shards]
        total = np.sum([x[0] for x in sums], axis=0)
        total_sq = np.sum([x[1] for x in sums], axis=0)
        sum_norm = float(sum(s["sum_norm"][hook] for s in shards))
        info.stats = fmt.finalize_stats(row_start, total, total_sq, sum_norm)
    fmt.write_manifest(out / fmt.MANIFEST, merged)
    logger.info("merged %d rank stores into %s (%d rows)", len(parts), out, row_start)
    return out / fmt.MANIFEST
