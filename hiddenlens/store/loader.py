"""Streaming, bounded-memory, reproducible shuffled batches from an activation store.

The rows are cut into blocks of ``block_rows`` consecutive rows; the blocks are permuted
over the whole store with ``seed`` (one global shuffle, not a local shuffle buffer as in
SAELens or sparsify); ranks take disjoint, equally sized slices of that order, as
``torch.utils.data.DistributedSampler`` does; each batch is gathered straight from the
memory-mapped shards into a new tensor (planned per run of rows, then one ``take`` per
shard into its slice of the batch). ``block_rows=1`` is a full row-level shuffle.

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
        j0, j1 = self._position(r0), self._position(r1 - 1) + 1
        first = self.order[j0:j1] * self.k
        n = np.full(j1 - j0, self.k)
        if j0 <= self.pos < j1:
            n[self.pos - j0] = self.short
        n[-1] -= int(self._start(j1 - 1)) + int(n[-1]) - r1  # the last block cut at r1
        head = r0 - int(self._start(j0))  # and the first at r0
        first[0] += head
        n[0] -= head
        return first, n

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
    if not single and not isinstance(hooks, (list, tuple)):
        raise TypeError(f"hooks must be a hook name or a list of hook names, got {hooks!r}")
    names = [hooks] if single else list(hooks)
    if not names:
        raise ValueError("hooks is empty; pass a hook name or a list of hook names")
    infos = [store._info(h) for h in names]
    _check_args(batch_size, rank, world_size, block_rows, seed)
    for flag, value in (("shuffle", shuffle), ("drop_last", drop_last), ("interleave", interleave)):
        if not isinstance(value, (bool, np.bool_)):  # "no" or None would pass silently
            raise TypeError(f"{flag} must be True or False, got {value!r}")
    n_blocks = -(-len(store) // block_rows)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_blocks) if shuffle else np.arange(n_blocks)
    blocks = _BlockOrder(len(store), block_rows, order)
    if not _is_int(start_batch) or start_batch < 0:
        raise ValueError(f"start_batch must be a non-negative int, got {start_batch!r}")
    ranges = _batch_ranges(len(store), batch_size, rank, world_size, drop_last, interleave)
    if start_batch > len(ranges):  # == len: a pass resumed at its very end (nothing left)
        raise ValueError(
            f"start_batch={start_batch} is past this pass's {len(ranges)} batches "
            f"(batch_size={batch_size}, world_size={world_size})"
        )
    ranges = ranges[start_batch:]
    bounds = np.array([store.shard_rows(s)[0] for s in range(store.n_shards)] + [len(store)])
    group_seed = (seed, rank, world_size, start_batch) if shuffle else None
    # files still unchecked are checked in the background in the order this pass reads them
    first = (lambda: _first_use(blocks, bounds, ranges[0][0], ranges[-1][1])) if ranges else None
    store.verify_ahead([info.file for info in infos], first)
    return _generate(store, infos, single, blocks, ranges, bounds, group_seed)


def _first_use(blocks, bounds, r0: int, r1: int, chunk: int = 1 << 18) -> np.ndarray:
    """Shards in the order permuted rows [r0, r1) first reach them (by each block's start).

    Walks the block order a chunk at a time and stops once every shard has been seen (a
    shuffled order reaches all of them early) or after 8 chunks; shards not reached are
    left out (the verifier takes them last). Order only matters for speed.
    """
    seen = np.zeros(len(bounds) - 1, dtype=bool)
    out = []
    j0, j1 = blocks._position(r0), blocks._position(r1 - 1) + 1
    for c in range(j0, min(j1, j0 + 8 * chunk), chunk):
        starts = blocks.order[c : min(c + chunk, j1)] * blocks.k
        shard = np.searchsorted(bounds, starts, side="right") - 1
        ids, where = np.unique(shard, return_index=True)
        new = ~seen[ids]
        out.append(ids[new][np.argsort(where[new], kind="stable")])
        seen[ids] = True
        if seen.all():
            break
    return np.concatenate(out)


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
    kinds = [(info.file, info.d, _storage(info), info) for info in infos]
    for i, (r0, r1) in enumerate(ranges):
        # per-batch generator: skipping batches (start_batch) leaves later batches unchanged
        rng = None
        if group_seed is not None:
            seed, rank, world, start = group_seed
            rng = np.random.default_rng([seed, rank, world, start + i])
        local, groups = _plan(blocks, bounds, r0, r1, rng)
        out = []
        for name, d, dtype, info in kinds:
            batch = np.empty((len(local), d), dtype=dtype)
            _gather(store, name, local, groups, batch)
            out.append(_to_tensor(batch, info))
        yield out[0] if single else tuple(out)


def _plan(blocks, bounds, r0, r1, rng) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Where the rows of permuted rows [r0, r1) come from: one group per shard.

    Returns the shard-local row ids grouped by shard (stably: block order kept inside a
    group) and the groups as (shard, start, stop in ``local``, first output row); with
    ``rng`` the groups are laid out in a random order (which shard's rows come first is
    random too). Planning is per run (a batch of 4096 rows in blocks of 16 is 256 runs).
    """
    shard, first, n = _by_shard(*blocks.runs(r0, r1), bounds)
    ends = np.cumsum(n)
    local = _expand(first, n)
    cut = np.flatnonzero(shard[1:] != shard[:-1]) + 1  # runs that start a new shard
    edges = np.concatenate(([0], ends[cut - 1], [r1 - r0]))  # groups' rows in `local`
    shards = shard[np.concatenate(([0], cut))]
    if rng is not None and len(shards) > 1:
        laid = rng.permutation(len(shards))
        shards, lo, hi = shards[laid], edges[:-1][laid], edges[1:][laid]
    else:
        lo, hi = edges[:-1], edges[1:]
    at = np.cumsum(hi - lo) - (hi - lo)  # where each group goes in the batch
    return local, list(zip(shards.tolist(), lo.tolist(), hi.tolist(), at.tolist()))


def _gather(store, name, local, groups, out) -> None:
    """Fill ``out`` with the rows of file ``name`` that ``groups`` plan (one take per shard).

    A shard whose file a background thread is still checking is left for last: the other
    shards' rows are copied meanwhile, and a file's rows are only read once it is checked.
    """
    later, array = [], store.array
    for s, lo, hi, at in groups:  # the hot loop: positional arguments, no helper calls
        src = array(s, name, False)
        if src is None:
            later.append((s, lo, hi, at))
        else:  # "clip": with the default "raise" numpy buffers `out` (an extra copy)
            src.take(local[lo:hi], 0, out[at : at + hi - lo], "clip")
    for s, lo, hi, at in later:
        array(s, name).take(local[lo:hi], 0, out[at : at + hi - lo], "clip")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)  # an epoch may be numpy


def row_range(start, stop, n: int) -> tuple[int, int]:
    """``[start, stop)`` (``stop`` None: ``n``) checked against ``n`` rows, as ints.

    The one check of ``rows(hook, start, stop)`` for a store and a MemorySource.
    """
    stop = n if stop is None else stop
    if not _is_int(start) or not _is_int(stop):
        raise TypeError(f"row range bounds must be ints, got start={start!r}, stop={stop!r}")
    if not 0 <= start <= stop <= n:
        raise ValueError(f"row range [{start}, {stop}) is outside [0, {n}]")
    return int(start), int(stop)


def _check_args(batch_size, rank, world_size, block_rows, seed) -> None:
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not _is_int(world_size) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if not _is_int(rank) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an int in [0, {world_size}), got {rank!r}")
    if not _is_int(block_rows) or block_rows < 1:
        raise ValueError(f"block_rows must be a positive int, got {block_rows!r}")
    if not _is_int(seed) or seed < 0:  # None would shuffle differently on every call
        raise ValueError(f"seed must be a non-negative int (e.g. the epoch), got {seed!r}")
