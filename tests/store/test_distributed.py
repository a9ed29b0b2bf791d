"""Caching from several ranks gives the store one process would have written."""

import copy
import threading

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens.store import cache_activations
from hiddenlens.store.distributed import cache_activations_ranked, rank_slice


def _run_ranks(model, data, out, world, **kwargs):
    results, errors = {}, []

    def work(rank):
        try:  # each rank has its own model copy, as separate processes would
            results[rank] = cache_activations_ranked(
                copy.deepcopy(model),
                data,
                ["0", "2"],
                out,
                rank=rank,
                world_size=world,
                timeout_s=120,
                **kwargs,
            )
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_three_ranks_equal_one_process(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 5))
    x = torch.randn(101, 6)
    labels = {"y": np.arange(101) % 4}
    kwargs = dict(batch_size=8, labels=labels, shard_size_mb=0.001)
    ref = cache_activations(model, x, ["0", "2"], tmp_path / "ref", **kwargs)
    stores = _run_ranks(model, x, tmp_path / "dist", 3, **kwargs)
    merged = stores[0]
    assert len(merged) == len(ref) == 101 and merged.n_shards > 3
    for hook in ("0", "2"):
        np.testing.assert_allclose(merged.rows(hook), ref.rows(hook), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(
            merged.stats(hook)["mean"], ref.stats(hook)["mean"], rtol=1e-7, atol=1e-10
        )
        np.testing.assert_allclose(
            merged.stats(hook)["var"], ref.stats(hook)["var"], rtol=1e-7, atol=1e-10
        )
    for key in ("sample_idx", "y"):
        assert np.array_equal(merged.meta[key], ref.meta[key])
    merged.verify()
    # every rank returns the merged store, and a re-run reopens the finished parts
    assert all(len(s) == 101 for s in stores.values())
    assert len(_run_ranks(model, x, tmp_path / "dist", 3, **kwargs)[1]) == 101


def test_rank_slices_and_bad_input(tmp_path):
    assert [rank_slice(10, r, 3) for r in range(3)] == [(0, 3), (3, 6), (6, 10)]
    with pytest.raises(ValueError, match="rank must be in"):
        rank_slice(10, 3, 3)
    with pytest.raises(ValueError, match="max_rows"):
        cache_activations_ranked(
            nn.Linear(2, 2), torch.randn(4, 2), "", tmp_path, rank=0, world_size=2, max_rows=3
        )


def test_separate_processes_with_torchrun_environment(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from hiddenlens.store import ActivationStore

    worker = Path(__file__).with_name("_rank_worker.py")
    root = str(Path(__file__).parents[2])
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), str(tmp_path / "s")],
            env=dict(os.environ, RANK=str(r), WORLD_SIZE="2", PYTHONPATH=root),
        )
        for r in range(2)
    ]
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    store = ActivationStore.open(tmp_path / "s")
    assert len(store) == 90 and list(store.meta["sample_idx"]) == list(range(90))
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.is_dir()) == [
        "rank_000",
        "rank_001",
    ]


def test_every_npy_header_of_a_ranked_cache_is_parsed_under_the_lock(tmp_path, monkeypatch):
    """CPython 3.11's ast parser (numpy's header parse) is not thread-safe, so every header
    the store parses with numpy takes the one lock: here the ranks' stats merged by rank 0
    and the shard tables opened by each rank (threads, as in the tests above)."""
    import ast
    import threading

    from hiddenlens.store import verify

    class Owned:  # the lock, knowing which thread holds it (locked() is true for any)
        def __init__(self):
            self.lock, self.owner = threading.Lock(), None

        def __enter__(self):
            self.lock.acquire()
            self.owner = threading.get_ident()

        def __exit__(self, *exc):
            self.owner = None
            self.lock.release()

    lock, real, calls = Owned(), ast.literal_eval, []

    def guarded(*args, **kwargs):  # numpy parses .npy headers with ast.literal_eval
        calls.append(lock.owner == threading.get_ident())  # held by this very thread
        return real(*args, **kwargs)

    monkeypatch.setattr(verify, "_HEADER_LOCK", lock)
    monkeypatch.setattr(ast, "literal_eval", guarded)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 5))
    stores = _run_ranks(model, torch.randn(40, 6), tmp_path / "s", 2, shard_size_mb=0.001)
    assert len(stores[0]) == 40 and len(calls) > 2 * stores[0].n_shards  # stats, tables
    assert all(calls)
