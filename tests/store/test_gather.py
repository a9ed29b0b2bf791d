"""The loader's fast paths: the verifier's work sharing (a waiter checks queued files
itself), the gather that copies checked shards first, the first-use order the verifier
follows, and .npy headers read without literal_eval. Threads are synchronised with
events only (no sleeps, no timing)."""

from __future__ import annotations

import io
import mmap
import threading

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens.store import ActivationStore, cache_activations
from hiddenlens.store import loader as L
from hiddenlens.store import verify as V


def _blocking_check(hold: str):
    """A check that blocks on key ``hold`` until released; records who checked what."""
    started, release, who = threading.Event(), threading.Event(), {}

    def check(key):
        who[key] = threading.current_thread().name
        if key == hold:
            started.set()
            assert release.wait(60), "the test never released the held key"
        if key == "bad":
            raise ValueError("corrupt store file bad")

    return check, started, release, who


def test_waiter_checks_queued_keys_itself_and_waits_for_started_ones():
    check, started, release, who = _blocking_check("a")
    ahead = V.AheadVerifier(["a", "b", "c"], check, threads=1)
    assert started.wait(60)  # the one worker holds "a"
    assert ahead.busy("a") and not ahead.busy("b")
    assert ahead.wait("c") and ahead.wait("b")  # queued: checked on this thread at once
    assert who["b"] == who["c"] == threading.current_thread().name
    assert ahead.wait("zzz") is False  # not one of its keys: the caller checks it
    release.set()
    assert ahead.wait("a") and who["a"].startswith("hiddenlens-verify")
    assert not ahead.busy("a")


def test_extended_keys_go_first_and_a_finished_verifier_takes_new_ones():
    order, four, hold_e, release_e = [], threading.Event(), threading.Event(), threading.Event()
    check, started, release, who = _blocking_check("a")

    def recorded(key):
        check(key)
        order.append(key)
        if len(order) == 4:
            four.set()
        if key == "e":
            hold_e.set()  # taken by a background thread, not by a waiter
            assert release_e.wait(60)

    ahead = V.AheadVerifier(["a", "b", "c"], recorded, threads=1)
    assert started.wait(60)  # the one worker holds "a"
    ahead.extend(["c", "d"])  # a later pass needs c and d first
    release.set()
    assert four.wait(60)  # the worker alone checks them (this thread waits for none)
    assert order == ["a", "c", "d", "b"]  # each once: c not again at its old place
    assert all(ahead.wait(k) for k in "abcd")
    ahead.extend(["e", "b"])  # b was reported: checked again; e: a thread takes it
    assert hold_e.wait(60) and who["e"].startswith("hiddenlens-verify")
    release_e.set()
    assert ahead.wait("e") and ahead.wait("b") and order.count("b") == 2


def test_error_of_a_check_reaches_the_waiter_once():
    check, _, _, _ = _blocking_check("none")
    ahead = V.AheadVerifier(["bad"], check, threads=1)
    with pytest.raises(ValueError, match="corrupt store file bad"):
        ahead.wait("bad")
    assert ahead.wait("bad") is False  # reported; the store checks it again inline


def test_interrupted_check_gives_the_key_back():
    check, started, release, who = _blocking_check("a")
    calls = []

    def flaky(key):
        calls.append(key)
        if key == "b" and calls.count("b") == 1:
            raise KeyboardInterrupt  # Ctrl-C while the reader checks "b" itself
        check(key)

    ahead = V.AheadVerifier(["a", "b"], flaky, threads=1)
    assert started.wait(60)
    with pytest.raises(KeyboardInterrupt):
        ahead.wait("b")
    assert not ahead.busy("b") and ahead.wait("b")  # taken again, checked this time
    release.set()
    assert ahead.wait("a") and calls.count("b") == 2


class _Deferring:
    """A two-shard source whose shard 0 is 'being checked' the first time it is asked."""

    def __init__(self):
        self.parts = [np.arange(20.0).reshape(10, 2), 100 + np.arange(20.0).reshape(10, 2)]
        self.asked = []

    def array(self, shard, name, wait=True):
        self.asked.append((shard, wait))
        if shard == 0 and not wait and (0, False) not in self.asked[:-1]:
            return None
        return self.parts[shard]


def test_gather_copies_ready_shards_first_and_fills_every_row():
    src = _Deferring()
    local = np.array([3, 1, 4, 0, 9, 2])
    groups = [(0, 0, 3, 3), (1, 3, 6, 0)]  # shard 0's rows go after shard 1's
    out = np.full((6, 2), -1.0)
    L._gather(src, "x", local, groups, out)
    assert src.asked == [(0, False), (1, False), (0, True)]  # shard 0 left for last
    ref = np.concatenate([src.parts[1][[0, 9, 2]], src.parts[0][[3, 1, 4]]])
    assert np.array_equal(out, ref)


@pytest.mark.parametrize("kw", [dict(seed=0), dict(seed=3, rank=1, world=2), dict(seed=1)])
def test_first_use_is_the_order_batches_reach_shards(kw):
    """Shards (here whole blocks each) in the order the rank's rows first reach them."""
    n, k = 995, 5
    world, rank = kw.get("world", 1), kw.get("rank", 0)
    sizes = k * np.random.default_rng(9).integers(4, 12, 40)
    bounds = np.r_[0, np.cumsum(sizes)]
    bounds = np.r_[bounds[bounds < n], n]
    order = np.random.default_rng(kw["seed"]).permutation(-(-n // k))
    blocks = L._BlockOrder(n, k, order)
    lo, hi = L.rank_range(n, rank, world, False)
    shard = np.searchsorted(bounds, blocks.rows(lo, hi), side="right") - 1
    ref = list(dict.fromkeys(shard.tolist()))
    assert len(ref) > 10
    assert L._first_use(blocks, bounds, lo, hi).tolist() == ref
    assert L._first_use(blocks, bounds, lo, hi, chunk=30).tolist() == ref  # 7 chunks
    capped = L._first_use(blocks, bounds, lo, hi, chunk=3).tolist()  # stops after 8 chunks
    assert 0 < len(capped) < len(ref) and capped == ref[: len(capped)]


@pytest.mark.parametrize(
    "arr",
    [np.zeros((9, 4), np.float32), np.arange(3), np.zeros((0, 4), "<f2"), np.array(5.0),
     np.asfortranarray(np.ones((4, 3))), np.zeros((1, 2, 1), ">i4"),
     np.zeros(3, dtype=[("a", "<f4")])],  # fmt: skip
)
def test_plain_headers_read_without_literal_eval_equal_numpy(tmp_path, arr):
    path = tmp_path / "a.npy"
    np.save(path, arr)
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    fast = V._plain_header(mm)
    assert fast is None if arr.dtype.names else fast == V._parsed_header(path)
    assert np.array_equal(V.npy_array(mm, path), arr)


def test_header_not_in_numpy_layout_goes_through_numpy(tmp_path):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.arange(6).reshape(2, 3), version=(2, 0))
    path = tmp_path / "v2.npy"
    path.write_bytes(buf.getvalue())
    with open(path, "rb") as fh:
        mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    assert V._plain_header(mm) is None
    assert np.array_equal(V.npy_array(mm, path), np.arange(6).reshape(2, 3))


def test_first_pass_equals_unverified_pass_and_checks_each_file_once(tmp_path):
    """Readers and verifier threads share the checks: every file checked exactly once,
    and the batches are those of a store read without checks."""
    data = torch.randn(900, 8, generator=torch.Generator().manual_seed(4))
    out = tmp_path / "s"
    cache_activations(nn.Sequential(nn.Identity()), data, ["0"], out, shard_size_mb=0.002)
    ref = list(ActivationStore.open(out, verify=False).batches("0", 128, seed=2))
    store = ActivationStore.open(out)
    checked, lock = [], threading.Lock()
    real = store._check_file

    def counted(*a, **k):
        with lock:
            checked.append(a)
        return real(*a, **k)

    store._check_file = counted
    got = list(store.batches("0", 128, seed=2))
    assert store.n_shards >= 8 and len(got) == len(ref)
    assert all(torch.equal(a, b) for a, b in zip(got, ref))
    assert sorted(checked) == [(i, "act.0.npy") for i in range(store.n_shards)]


def test_verifier_takes_shards_in_the_order_the_pass_first_reads_them(tmp_path, monkeypatch):
    from hiddenlens.store import reader

    x = torch.arange(600, dtype=torch.float32)[:, None].repeat(1, 2)
    out = tmp_path / "s"
    cache_activations(nn.Sequential(nn.Identity()), x, "0", out, batch_size=20,
                      shard_size_mb=40 * 2 * 4 / 2**20)  # fmt: skip  (40-row shards)
    queued = []

    class Recorder:  # no threads: records the queue; every check then runs inline
        def __init__(self, keys, check):
            queued.extend(keys)

        def busy(self, key):
            return False

        def wait(self, key):
            return False

    monkeypatch.setattr(reader, "AheadVerifier", Recorder)
    store = ActivationStore.open(out)
    starts = [store.shard_rows(s)[0] for s in range(store.n_shards)]
    seen, new = set(), []  # shards each batch reads first (inside a batch, order is free)
    for b in store.batches("0", 6, seed=7, block_rows=1):
        shards = set((np.searchsorted(starts, b[:, 0].long().numpy(), side="right") - 1).tolist())
        new.append(shards - seen)
        seen |= shards
    assert store.n_shards == 15 and len(new[0]) < 15 and len(seen) == 15
    assert [name for _, name in queued] == ["act.0.npy"] * 15
    at = 0
    for fresh in new:
        assert {s for s, _ in queued[at : at + len(fresh)]} == fresh
        at += len(fresh)
    queued.clear()
    list(store.batches("0", 64, seed=8))
    assert queued == []  # every file checked: no verifier, no first-use walk
