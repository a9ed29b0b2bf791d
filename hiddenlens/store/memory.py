"""The in-memory activation source: arrays held in RAM behind the store's interface.

:class:`MemorySource` is what :func:`hiddenlens.store.as_source` makes of a dict of arrays
or tensors (or of one array), so an analyzer, an SAE trainer or a feature search runs
the same code on activations captured a moment ago as on an on-disk
:class:`~hiddenlens.store.ActivationStore`. It presents itself to the batch loader as a
store of one shard, so ``batches`` is the store's loader (same order for the same seed
and ``block_rows``) and ``stats`` are the writer's float64 running statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hiddenlens.store import format as fmt
from hiddenlens.store.loader import row_range
from hiddenlens.store.shards import row_stats
from hiddenlens.store.source import check_meta

_STATS_CHUNK = 65536  # rows converted to float64 at a time by stats()


@dataclass(frozen=True)
class _Info:
    """What the batch loader needs to know of one hook (see ``format.HookInfo``)."""

    d: int
    dtype: str
    storage_dtype: str
    file: str


def _as_array(name: str, x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = (x.float() if x.dtype == torch.bfloat16 else x).numpy()  # numpy has no bfloat16
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"activations of {name!r} must be numeric, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"activations of {name!r} must be 2-D [n, d], got shape {arr.shape}")
    return arr


class MemorySource:
    """Row-aligned arrays ``hook -> [n, d]`` in memory, with optional ``meta`` columns.

    Rows keep the dtype they were given (``rows`` returns views, no copy); ``batches``
    yields float32 tensors like the store. Tensors are moved to the CPU (bfloat16 becomes
    float32). ``block_rows`` defaults to 1 (a row-level shuffle: memory has no read-ahead
    to keep sequential, so the store's blocks of 16 would only make the shuffle coarser).
    """

    def __init__(self, arrays: Mapping[str, Any], meta: Mapping[str, Any] | None = None):
        if not isinstance(arrays, Mapping) or not arrays:
            raise ValueError("arrays must be a non-empty dict hook -> array/tensor [n, d]")
        self._arrays: dict[str, np.ndarray] = {}
        for name, x in arrays.items():
            if not isinstance(name, str):
                raise TypeError(f"hook names must be strings, got {name!r}")
            self._arrays[name] = _as_array(name, x)
        sizes = {h: a.shape[0] for h, a in self._arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"hook points have different row counts: {sizes}")
        self._n = next(iter(sizes.values()))
        self._meta = check_meta(meta, self._n)
        self._stats: dict[str, dict[str, Any]] = {}

    @property
    def hook_points(self) -> list[str]:
        return list(self._arrays)

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"MemorySource(rows={self._n}, hooks={self.hook_points})"

    def _array(self, hook: str) -> np.ndarray:
        if hook not in self._arrays:
            raise ValueError(f"hook {hook!r} is not in this source; available: {self.hook_points}")
        return self._arrays[hook]

    def d(self, hook: str) -> int:
        return int(self._array(hook).shape[1])

    def rows(self, hook: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of ``hook`` as ``[n, d]`` (a view of the array)."""
        arr = self._array(hook)
        start, stop = row_range(start, stop, self._n)
        return arr[start:stop]

    @property
    def meta(self) -> dict[str, np.ndarray]:
        """Per-row columns (sample_idx, position, token_id, labels) given at construction."""
        return dict(self._meta)

    def stats(self, hook: str) -> dict[str, Any]:
        """mean [d], var [d] (ddof=0), mean_norm, count: the store writer's float64 sums."""
        if hook not in self._stats:
            arr = self._array(hook)
            total, total_sq, norms = np.zeros(arr.shape[1]), np.zeros(arr.shape[1]), 0.0
            for start in range(0, self._n, _STATS_CHUNK):
                t, t2, nr = row_stats(arr[start : start + _STATS_CHUNK])
                total, total_sq, norms = total + t, total_sq + t2, norms + nr
            s = fmt.finalize_stats(self._n, total, total_sq, norms)
            self._stats[hook] = {
                "mean": np.asarray(s["mean"], dtype=np.float64),
                "var": np.asarray(s["var"], dtype=np.float64),
                "mean_norm": float(s["mean_norm"]),
                "count": int(s["count"]),
            }
        return {
            k: v.copy() if isinstance(v, np.ndarray) else v for k, v in self._stats[hook].items()
        }

    def batches(self, hooks: str | list[str], batch_size: int, *, block_rows: int = 1, **kwargs):
        """Float32 tensors ``[b, d]``: :meth:`ActivationStore.batches` over one shard.

        The same keywords (shuffle, seed, rank, world_size, drop_last, interleave,
        start_batch) with the same meaning; only ``block_rows`` defaults to 1.
        """
        from hiddenlens.store.loader import iter_batches

        return iter_batches(self, hooks, batch_size, block_rows=block_rows, **kwargs)

    # -- the one-shard layout the batch loader reads ----------------------------------------
    n_shards = 1

    def shard_rows(self, shard: int) -> tuple[int, int]:
        return 0, self._n

    def _info(self, hook: str) -> _Info:
        arr = self._array(hook)
        return _Info(arr.shape[1], arr.dtype.name, arr.dtype.name, hook)

    def verify_ahead(self, names: list[str], first_use=None) -> None:
        """Nothing to check in memory."""

    def array(self, shard: int, name: str, wait: bool = True) -> np.ndarray:
        return self._array(name)  # nothing to check: always ready
