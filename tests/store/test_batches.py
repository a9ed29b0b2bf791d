"""Shuffled batches: every row exactly once, reproducible, disjoint and complete across ranks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.store.conftest import ID_ROWS as N


def _ids(batches) -> np.ndarray:
    return torch.cat(list(batches))[:, 0].long().numpy()


SMALL = dict(block_rows=7)  # blocks that do not align with batches or shards


@pytest.mark.parametrize("block_rows", [1, 7, 16])
def test_each_row_once_and_shuffled(id_store, block_rows):
    assert id_store.n_shards > 3
    corr = []
    for seed in range(10):
        ids = _ids(id_store.batches("0", 32, seed=seed, block_rows=block_rows))
        assert np.array_equal(np.sort(ids), np.arange(N))
        corr.append(abs(np.corrcoef(ids, np.arange(N))[0, 1]))
        # the output is made of runs of consecutive rows no longer than a block (or two
        # blocks that happen to meet): there are about N / block_rows of them
        n_runs = 1 + np.sum(np.diff(ids) != 1)
        assert n_runs >= 0.8 * N / block_rows
    assert np.mean(corr) < 0.2  # the order is unrelated to the storage order


def test_row_level_shuffle_is_uniform(id_store):
    """block_rows=1: each row's position is uniform; mean position ~ N/2 for every decile."""
    pos = np.empty(N)
    hits = np.zeros(N)
    for seed in range(20):
        ids = _ids(id_store.batches("0", 100, seed=seed, block_rows=1))
        pos[ids] = np.arange(N)
        hits += pos
    decile_means = (hits / 20).reshape(10, -1).mean(1)
    assert np.all(np.abs(decile_means - (N - 1) / 2) < 0.1 * N)


def test_batch_sizes_and_drop_last(id_store):
    sizes = [len(b) for b in id_store.batches("0", 64, **SMALL)]
    assert sizes == [64] * (N // 64) + [N % 64]
    sizes = [len(b) for b in id_store.batches("0", 64, drop_last=True, **SMALL)]
    assert sizes == [64] * (N // 64)


def test_reproducible_with_seed(id_store):
    a = _ids(id_store.batches("0", 50, seed=3, **SMALL))
    b = _ids(id_store.batches("0", 50, seed=3, **SMALL))
    c = _ids(id_store.batches("0", 50, seed=4, **SMALL))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_ranks_disjoint_and_complete(id_store, world_size):
    parts = [
        _ids(id_store.batches("0", 16, seed=1, rank=r, world_size=world_size, **SMALL))
        for r in range(world_size)
    ]
    joined = np.concatenate(parts)
    assert len(joined) == N and np.array_equal(np.sort(joined), np.arange(N))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    dropped = [
        _ids(
            id_store.batches(
                "0", 16, seed=1, rank=r, world_size=world_size, drop_last=True, **SMALL
            )
        )
        for r in range(world_size)
    ]
    per = (N // world_size) // 16 * 16
    assert all(len(p) == per for p in dropped)
    joined = np.concatenate(dropped)
    assert len(np.unique(joined)) == len(joined)


def test_unshuffled_is_storage_order(id_store):
    ids = _ids(id_store.batches("0", 100, shuffle=False))
    assert np.array_equal(ids, np.arange(N))
    ids = _ids(id_store.batches("0", 100, shuffle=False, rank=1, world_size=2))
    assert np.array_equal(ids, np.arange(N // 2, N))


def test_multiple_hooks_stay_aligned(id_store):
    seen = 0
    for a, b in id_store.batches(["0", "1"], 40, seed=2, **SMALL):
        assert a.dtype == torch.float32 and a.shape == (len(a), 6)
        assert torch.equal(b, 2 * a)
        seen += len(a)
    assert seen == N


def test_batches_are_independent_tensors(id_store):
    batches = list(id_store.batches("0", 32, seed=0, **SMALL))  # buffers are reused inside
    assert np.array_equal(np.sort(_ids(batches)), np.arange(N))
    batches[0].zero_()  # writable, and writing does not touch the store
    assert id_store.rows("0")[:, 0].sum() == N * (N - 1) / 2


def test_interleaved_ranks_split_the_single_process_batches(tmp_path):
    import torch as _torch

    from hiddenlens.store import cache_activations

    model = _torch.nn.Sequential(_torch.nn.Identity())
    x = _torch.arange(203, dtype=_torch.float32).unsqueeze(1).repeat(1, 3)
    store = cache_activations(model, x, "0", tmp_path / "s", batch_size=25, shard_size_mb=0.0004)
    assert store.n_shards > 4  # batches mix rows from several shards
    single = [b[:, 0].tolist() for b in store.batches("0", 20, seed=3, block_rows=4)]
    per_rank = [
        [
            b[:, 0].tolist()
            for b in store.batches(
                "0", 10, seed=3, block_rows=4, rank=r, world_size=2, interleave=True
            )
        ]
        for r in range(2)
    ]
    assert len(per_rank[0]) == len(per_rank[1]) == 203 // 20
    for i, (a, b) in enumerate(zip(*per_rank)):
        assert sorted(a + b) == sorted(single[i])
    resumed = [
        b[:, 0].tolist() for b in store.batches("0", 20, seed=3, block_rows=4, start_batch=4)
    ]
    assert resumed == single[4:]


def test_shards_shorter_than_a_block_give_the_in_memory_batches(tmp_path):
    """Runs of a block that span several shards are cut at every shard start: each batch
    holds the rows of the in-memory batch (one shard, same seed and blocks), grouped by
    shard with each shard's rows in the in-memory order."""
    from torch import nn

    from hiddenlens.store import MemorySource, cache_activations

    x = torch.arange(300, dtype=torch.float32)[:, None].repeat(1, 2)
    store = cache_activations(
        nn.Sequential(nn.Identity()), x, "0", tmp_path / "s", batch_size=3, shard_size_mb=1e-5
    )  # fmt: skip  (3-row shards)
    assert store.n_shards == 100
    mem = MemorySource({"0": store.rows("0")})
    for kw in [dict(seed=0, block_rows=16), dict(seed=1, block_rows=10, world_size=2, rank=1)]:
        pairs = list(zip(store.batches("0", 64, **kw), mem.batches("0", 64, **kw), strict=True))
        for a, b in pairs:
            ids, ref = a[:, 0].long().numpy(), b[:, 0].long().numpy()
            shard = ids // 3
            assert (np.diff(shard) != 0).sum() == len(set(shard)) - 1  # one group per shard
            for s in set(shard):
                assert list(ids[shard == s]) == list(ref[ref // 3 == s])


@pytest.mark.parametrize(
    "kw,word",
    [
        (dict(seed=None), "seed"),
        (dict(seed=1.5), "seed"),
        (dict(seed=-1), "seed"),
        (dict(seed=True), "seed"),
        (dict(batch_size=True), "batch_size"),
        (dict(start_batch=True), "start_batch"),
        (dict(block_rows=0), "block_rows"),
        (dict(rank=2, world_size=2), "rank"),
    ],  # fmt: skip
)
def test_bad_batch_arguments_are_refused_naming_them(id_store, kw, word):
    kw = dict(kw)
    batch_size = kw.pop("batch_size", 32)
    with pytest.raises(ValueError, match=rf"{word} must be .*got {kw.get(word, batch_size)!r}"):
        id_store.batches("0", batch_size, **kw)  # refused at the call, before any batch


def test_numpy_int_seed_gives_the_batches_of_the_same_int(id_store):
    a = _ids(id_store.batches("0", 100, seed=np.int64(3)))
    assert np.array_equal(a, _ids(id_store.batches("0", 100, seed=3)))


@pytest.mark.parametrize("hooks", [None, 5, {"0"}])
def test_hooks_that_are_not_names_are_refused_naming_them(id_store, hooks):
    with pytest.raises(TypeError, match=rf"hooks must be a hook name or a list .*got {hooks!r}"):
        id_store.batches(hooks, 32)


@pytest.mark.parametrize("flag", ["shuffle", "drop_last", "interleave"])
@pytest.mark.parametrize("value", ["no", None, 1])
def test_non_bool_flags_are_refused_naming_them(id_store, flag, value):
    with pytest.raises(TypeError, match=rf"{flag} must be True or False, got {value!r}"):
        id_store.batches("0", 32, **{flag: value})


@pytest.mark.parametrize("bounds", [(1.5, 3), ("a", 3), (None, 3), (0, 2.0), (True, 3)])
def test_row_bounds_that_are_not_ints_are_refused_naming_them(id_store, bounds):
    from hiddenlens.store import MemorySource

    mem = MemorySource({"0": id_store.rows("0")})
    for src in (id_store, mem):
        with pytest.raises(TypeError, match=r"row range bounds must be ints, got start="):
            src.rows("0", *bounds)
    assert np.array_equal(id_store.rows("0", np.int64(2), 5), mem.rows("0", 2, np.int64(5)))


def test_start_batch_past_the_pass_is_refused_and_its_end_is_empty(id_store):
    n_batches = -(-N // 64)
    assert (
        list(id_store.batches("0", 64, start_batch=n_batches, **SMALL)) == []
    )  # resumed at the end
    tail = list(
        id_store.batches(
            "0", 64, shuffle=False, start_batch=n_batches - 1, block_rows=SMALL["block_rows"]
        )
    )
    assert len(tail) == 1 and tail[0].shape[0] == N - 64 * (n_batches - 1)
    with pytest.raises(ValueError, match=rf"start_batch={n_batches + 1} is past this pass's "):
        list(id_store.batches("0", 64, start_batch=n_batches + 1, **SMALL))
