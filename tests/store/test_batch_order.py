"""The exact batch order, pinned: a per-row reference implementation of the documented
shuffle, and digests of batch sequences recorded before the loader's gather was rewritten
(same seed -> the same batches, bit for bit, across versions)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from torch import nn

N_ROWS = 203  # 7-row shards: blocks of 4, 5 and 16 rows cross shard boundaries


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    from hiddenlens.store import cache_activations

    x = torch.arange(N_ROWS, dtype=torch.float32)[:, None].repeat(1, 3)
    x[:, 1] = -x[:, 0]
    out = tmp_path_factory.mktemp("order") / "s"
    s = cache_activations(nn.Sequential(nn.Identity()), x, "0", out, batch_size=7,
                          shard_size_mb=7 * 3 * 4 / 2**20)  # fmt: skip
    assert s.n_shards == 29
    return s


def _ranges(n, b, rank, world, drop_last, interleave):
    """[r0, r1) of each batch of permuted rows, as ActivationStore.batches documents."""
    if interleave:
        return [(g + rank * b, g + rank * b + b) for g in range(0, n - b * world + 1, b * world)]
    if drop_last:
        lo, hi = rank * (n // world), (rank + 1) * (n // world)
    else:
        lo, hi = rank * n // world, (rank + 1) * n // world
    out = [(r, min(r + b, hi)) for r in range(lo, hi, b)]
    return out[:-1] if drop_last and out and out[-1][1] - out[-1][0] < b else out


def reference(starts, n, b, *, seed=0, rank=0, world=1, drop_last=False, k=16,
              interleave=False, start_batch=0, shuffle=True):  # fmt: skip
    """Row ids of each batch, one row at a time: blocks of k rows permuted with ``seed``,
    a batch's rows grouped by shard (each shard's rows in permuted order), the groups
    permuted with the batch's own generator (seed, rank, world, batch index)."""
    blocks = np.random.default_rng(seed).permutation(-(-n // k)) if shuffle else range(-(-n // k))
    permuted = [r for blk in blocks for r in range(blk * k, min(blk * k + k, n))]
    ranges = _ranges(n, b, rank, world, drop_last, interleave)[start_batch:]
    for i, (r0, r1) in enumerate(ranges):
        rows = permuted[r0:r1]
        shard_of = {r: int(np.searchsorted(starts, r, side="right")) - 1 for r in rows}
        groups = sorted(set(shard_of.values()))
        if shuffle and len(groups) > 1:
            rng = np.random.default_rng([seed, rank, world, start_batch + i])
            groups = [groups[j] for j in rng.permutation(len(groups))]
        yield [r for g in groups for r in rows if shard_of[r] == g]


CASES = [
    dict(),
    dict(seed=5, k=5),
    dict(seed=1, k=1),
    dict(seed=2, k=4, world=3, rank=2),
    dict(seed=2, k=4, world=3, rank=1, drop_last=True),
    dict(seed=3, k=4, world=2, rank=1, interleave=True),
    dict(seed=3, k=5, start_batch=3),
    dict(seed=4, k=16, world=2, rank=0, interleave=True, start_batch=2),
    dict(k=4, shuffle=False, world=2, rank=1),
]

# sha256 of the int64 row ids of every batch (batch sizes included), from the loader as
# it was before its gather was rewritten (commit 07e3e7a)
PINNED = {
    0: "6eb1a440776b6597",
    1: "c5fb7a043316804e",
    2: "faac6762914e266b",
    3: "75773d79c4f5a265",
    4: "47a4b26d02840e6e",
    5: "7abb27bc46e04910",
    6: "3d18625cb35cf235",
    7: "5d3f1e68caefd3c4",
    8: "4d17fce6441d29bb",
}


def _batches(store, b, kw):
    kw = dict(kw)
    names = dict(k="block_rows", world="world_size")
    kw = {names.get(key, key): v for key, v in kw.items()}
    return [t[:, 0].long().numpy() for t in store.batches("0", b, **kw)]


def _digest(batches) -> str:
    h = hashlib.sha256()
    for ids in batches:
        h.update(np.int64(len(ids)).tobytes() + ids.astype(np.int64).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("i", range(len(CASES)))
def test_batches_equal_the_row_by_row_reference(store, i):
    starts = [store.shard_rows(s)[0] for s in range(store.n_shards)]
    got = _batches(store, 20, CASES[i])
    ref = list(reference(starts, N_ROWS, 20, **CASES[i]))
    assert [g.tolist() for g in got] == ref
    t = next(iter(store.batches("0", 20, seed=1)))
    assert torch.equal(t[:, 1], -t[:, 0])  # every column of a row comes from that row


@pytest.mark.parametrize("i", range(len(CASES)))
def test_batch_sequence_is_pinned(store, i):
    assert _digest(_batches(store, 20, CASES[i])) == PINNED[i]
