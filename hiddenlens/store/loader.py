"""Streaming, bounded-memory, reproducible shuffled batches from an activation store.

The rows are cut into blocks of ``block_rows`` consecutive rows; the blocks are permuted
over the whole store with ``seed`` (one global shuffle, not a local shuffle buffer as in
SAELens or sparsify); ranks take disjoint, equally sized slices of that order, as
``torch.utils.data.DistributedSampler`` does; each batch is gathered straight from the
memory-mapped shards into a new tensor. ``block_rows=1`` is a full row-level shuffle.

Why blocks: a row-level random gather over a store larger than the CPU cache is bound by
memory (or disk) latency, about half the throughput of a sequential read for 1.5 KB rows
on the development machine; runs of 16 rows keep the reads mostly sequential (about
0.8x of a sequential read) while a batch of 4096 rows still mixes 256 random places.
Memory: the block permutation (8 bytes per block) plus one batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch


class _BlockOrder:
    """Rows of a store in permuted-block order, without materialising a per-row index."""

    def __init__(self, n_rows: int, block_rows: int, order: np.ndarray):
        self.n, self.k, self.order = n_rows, block_rows, order
        self.last = len(order) - 1  # the only block that may be short
        self.short = n_rows - self.last * block_rows
        self.pos = int(np.flatnonzero(order == self.last)[0]) if len(order) else 0

    def _start(self, j: np.ndarray) -> np.ndarray:
        """First row (in permuted order) of permuted block position(s) ``j``."""
        return j * self.k - (j > self.pos) * (self.k - self.short)

    def _position(self, r: int) -> int:
        """Permuted block position holding permuted row ``r``."""
        boundary = self.pos * self.k + self.short
        return r // self.k if r < boundary else (r + self.k - self.short) // self.k

    def runs(self, r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
        """Permuted rows [r0, r1) as runs of consecutive global rows: (first row, length)."""
        j = np.arange(self._position(r0), self._position(r1 - 1) + 1)
        blocks = self.order[j]
        begin = self._start(j)
        length = np.where(blocks == self.last, self.short, self.k)
        take_from = np.maximum(r0 - begin, 0)
        take_to = np.minimum(r1 - begin, length)
        return blocks * self.k + take_from, take_to - take_from

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Global row ids of permuted rows [r0, r1)."""
        return _expand(*self.runs(r0, r1))


def _expand(first: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The row ids of runs (first, length), concatenated."""
    offsets = np.cumsum(n) - n
    return np.repeat(first - offsets, n) + np.arange(int(n.sum()))


def _by_shard(first: np.ndarray, n: np.ndarray, bounds: np.ndarray):
    """Runs split at shard boundaries and grouped by shard (stably: permuted order kept).

    ``bounds`` holds every shard's first row and then the row count. Returns the shard of
    each run, the run's first row local to its shard, and the run lengths. Planning per run
    (a batch of 4096 rows in blocks of 16 is 256 runs), not per row, keeps it cheap.
    """
    shard = np.searchsorted(bounds, first, side="right") - 1
    last = np.searchsorted(bounds, first + n - 1, side="right") - 1
    if (last != shard).any():  # shards shorter than a block: cut runs at shard starts
        pieces = [
            (max(f, bounds[s]), min(f + m, bounds[s + 1]), s)
            for f, m, a, b in zip(first.tolist(), n.tolist(), shard.tolist(), last.tolist())
            for s in range(a, b + 1)
        ]
        lo, hi, shard = (np.array(x, dtype=np.int64) for x in zip(*pieces))
        first, n = lo, hi - lo
    order = np.argsort(shard, kind="stable")
    shard, first, n = shard[order], first[order], n[order]
    return shard, first - bounds[shard], n


def rank_range(n: int, rank: int, world_size: int, drop_last: bool) -> tuple[int, int]:
    """[lo, hi) of the permuted rows that ``rank`` reads."""
    if drop_last:  # every rank gets exactly n // world_size rows
        per = n // world_size
        return rank * per, (rank + 1) * per
    return rank * n // world_size, (rank + 1) * n // world_size  # sizes differ by <= 1


def _storage(info) -> np.dtype:
    return np.dtype(np.uint16 if info.dtype == "bfloat16" else info.storage_dtype)


def _to_tensor(arr: np.ndarray, info) -> torch.Tensor:
    if info.dtype == "bfloat16":
        return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16).float()
    t = torch.from_numpy(arr)
    return t if t.dtype == torch.float32 else t.float()


def iter_batches(
    store,
    hooks: str | list[str],
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
    block_rows: int = 16,
    interleave: bool = False,
    start_batch: int = 0,
) -> Iterator:
    """See :meth:`ActivationStore.batches`."""
    single = isinstance(hooks, str)
    names = [hooks] if single else list(hooks)
    if not names:
        raise ValueError("hooks is empty; pass a hook name or a list of hook names")
    infos = [store._info(h) for h in names]
    _check_args(batch_size, rank, world_size, block_rows)
    n_blocks = -(-len(store) // block_rows)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_blocks) if shuffle else np.arange(n_blocks)
    blocks = _BlockOrder(len(store), block_rows, order)
    if not isinstance(start_batch, int) or start_batch < 0:
        raise ValueError(f"start_batch must be a non-negative int, got {start_batch!r}")
    ranges = _batch_ranges(len(store), batch_size, rank, world_size, drop_last, interleave)
    ranges = ranges[start_batch:]
    bounds = np.array([store.shard_rows(s)[0] for s in range(store.n_shards)] + [len(store)])
    group_seed = (seed, rank, world_size, start_batch) if shuffle else None
    return _generate(store, infos, single, blocks, ranges, bounds, group_seed)


def _batch_ranges(n, batch_size, rank, world_size, drop_last, interleave) -> list[tuple[int, int]]:
    """[r0, r1) of the permuted rows making up each of this rank's batches.

    Contiguous (default): the rank reads its own slice of the order. Interleaved: global
    batch i is permuted rows [i*B*W, (i+1)*B*W) and rank r takes its r-th B rows, so W ranks
    with batches of B see exactly the batches of one process with batches of B*W (what
    data-parallel training needs to equal a single-process run); only full global batches.
    """
    if interleave:
        step = batch_size * world_size
        return [
            (g + rank * batch_size, g + (rank + 1) * batch_size)
            for g in range(0, n - step + 1, step)
        ]
    lo, hi = rank_range(n, rank, world_size, drop_last)
    out = [(r0, min(r0 + batch_size, hi)) for r0 in range(lo, hi, batch_size)]
    if drop_last and out and out[-1][1] - out[-1][0] < batch_size:
        out.pop()
    return out


def _generate(store, infos, single, blocks, ranges, bounds, group_seed):
    for i, (r0, r1) in enumerate(ranges):
        # per-batch generator: skipping batches (start_batch) leaves later batches unchanged
        rng = None
        if group_seed is not None:
            seed, rank, world, start = group_seed
            rng = np.random.default_rng([seed, rank, world, start + i])
        # one gather per shard: rows grouped by shard (stable: block order kept inside)
        shard, first, n = _by_shard(*blocks.runs(r0, r1), bounds)
        local = _expand(first, n)
        heads = np.r_[0, np.flatnonzero(np.diff(shard)) + 1]  # first run of each shard
        at = (np.cumsum(n) - n)[heads].tolist()
        groups = list(zip(shard[heads].tolist(), at, at[1:] + [len(local)]))
        if rng is not None and len(groups) > 1:  # which shard's rows come first is random too
            groups = [groups[i] for i in rng.permutation(len(groups))]
        out = []
        for info in infos:
            batch = np.empty((len(local), info.d), dtype=_storage(info))
            at = 0
            for s, g0, g1 in groups:
                src = store.array(s, info.file)
                # mode="clip": with the default "raise" numpy buffers `out` (an extra copy)
                np.take(src, local[g0:g1], axis=0, out=batch[at : at + g1 - g0], mode="clip")
                at += g1 - g0
            out.append(_to_tensor(batch, info))
        yield out[0] if single else tuple(out)


def _check_args(batch_size, rank, world_size, block_rows) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    if not isinstance(block_rows, int) or block_rows < 1:
        raise ValueError(f"block_rows must be a positive int, got {block_rows!r}")
