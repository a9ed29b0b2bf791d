"""Checksums ahead of the reader: xxh3 recorded beside sha256, checked on background
threads when a pass starts; a corrupt file is still named before any of its rows are used."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import xxhash
from torch import nn

from hiddenlens.store import ActivationStore, cache_activations
from tests.store.conftest import as_schema1


@pytest.fixture
def store_dir(tmp_path):
    data = torch.randn(600, 16, generator=torch.Generator().manual_seed(2))
    out = tmp_path / "s"
    cache_activations(nn.Sequential(nn.Identity()), data, ["0"], out, shard_size_mb=0.005)
    return out


def test_both_digests_recorded(store_dir):
    store = ActivationStore.open(store_dir)
    assert store.n_shards >= 5
    for shard in store.manifest["shards"]:
        for name, entry in shard["files"].items():
            raw = (store_dir / shard["name"] / name).read_bytes()
            assert entry["sha256"] == hashlib.sha256(raw).hexdigest()
            assert entry["xxh3"] == xxhash.xxh3_128(raw).hexdigest()
            assert entry["bytes"] == len(raw)


def test_first_pass_verifies_ahead_and_later_passes_equal(store_dir):
    store = ActivationStore.open(store_dir)
    first = torch.cat(list(store.batches("0", 64, seed=3)))
    assert store._verified >= {(i, "act.0.npy") for i in range(store.n_shards)}
    again = torch.cat(list(store.batches("0", 64, seed=3)))
    assert torch.equal(first, again) and store._ahead is not None
    ref = torch.cat(list(ActivationStore.open(store_dir, verify=False).batches("0", 64, seed=3)))
    assert torch.equal(first, ref)


@pytest.mark.parametrize("shard", [0, 3])
def test_corrupt_file_named_before_its_rows_are_used(store_dir, shard):
    target = store_dir / f"shard_{shard:05d}" / "act.0.npy"
    raw = bytearray(target.read_bytes())
    raw[200] ^= 0x01  # one bit: the sizes agree, only a digest can tell
    target.write_bytes(bytes(raw))
    store = ActivationStore.open(store_dir)
    got = []
    with pytest.raises(
        ValueError, match=rf"corrupt store file .*shard_{shard:05d}/act\.0\.npy: xxh3"
    ):
        for batch in store.batches("0", 64, shuffle=False):
            got.append(batch)
    lo, _ = store.shard_rows(shard)
    assert sum(len(b) for b in got) <= lo  # no batch holding the corrupt shard's rows came out
    with pytest.raises(ValueError, match=rf"shard_{shard:05d}/act\.0\.npy: sha256"):
        ActivationStore.open(store_dir).verify()  # the strong check says sha256


def test_stores_without_xxh3_fall_back_to_sha256(store_dir):
    def drop_xxh3(m):  # a schema-1 store written before xxh3 was recorded
        for shard in m["shards"]:
            for entry in shard["files"].values():
                del entry["xxh3"]

    as_schema1(store_dir, drop_xxh3)
    target = store_dir / "shard_00001" / "act.0.npy"
    raw = bytearray(target.read_bytes())
    raw[-1] ^= 0x01
    target.write_bytes(bytes(raw))
    store = ActivationStore.open(store_dir)
    assert np.array_equal(store.rows("0", 0, 10), store.rows("0", 0, 10))
    with pytest.raises(ValueError, match=r"shard_00001/act\.0\.npy: sha256"):
        list(store.batches("0", 64))


def test_schema1_store_opens_and_reads_the_same(store_dir, tmp_path):
    """A store in the layout before the shard table (records inline in manifest.json)."""
    new = ActivationStore.open(store_dir)
    rows, meta = new.rows("0"), new.meta["sample_idx"]
    batches = torch.cat(list(new.batches("0", 64, seed=1)))
    records = new.manifest["shards"]
    as_schema1(store_dir)
    assert not (store_dir / "shards.npy").exists()
    old = ActivationStore.open(store_dir)
    assert old.manifest["schema_version"] == 1 and old.manifest["shards"] == records
    assert old.n_shards == new.n_shards and old.shard_rows(3) == new.shard_rows(3)
    assert np.array_equal(old.rows("0"), rows) and np.array_equal(old.meta["sample_idx"], meta)
    assert torch.equal(torch.cat(list(old.batches("0", 64, seed=1))), batches)
    old.verify()  # every sha256 from the inline records


def test_open_maps_are_bounded_and_reads_unchanged(store_dir):
    """Each memory map holds a file descriptor: a store keeps at most _max_maps open and
    maps a dropped file again (without hashing it again) when it is read again."""
    ref = torch.cat(list(ActivationStore.open(store_dir).batches("0", 64, seed=3)))
    store = ActivationStore.open(store_dir)
    store._max_maps = 2
    checked = []
    real = store._check_file
    store._check_file = lambda *a, **k: (checked.append(a), real(*a, **k))[1]
    for _ in range(2):
        assert torch.equal(torch.cat(list(store.batches("0", 64, seed=3))), ref)
        assert len(store._mmaps) <= 2 and len(store._maps) <= 2
    assert len(checked) == store.n_shards  # each file hashed once, on the first pass


def test_array_of_a_map_dropped_and_remapped_meanwhile_is_not_cached(store_dir, monkeypatch):
    """Another thread drops a file's map and maps the file again between this reader's
    mapping and its caching: the array (a view of the old map) must not be cached, or the
    store holds two maps of one file and more than _max_maps in all."""
    from hiddenlens.store import reader

    store = ActivationStore.open(store_dir, verify=False)
    real = reader.npy_array

    def remapped_meanwhile(mm, path):
        with store._lock:
            del store._mmaps[(0, "act.0.npy")]  # as an eviction on another thread does
        store._mapping(0, "act.0.npy")  # ... and a later read that maps it again
        return real(mm, path)

    monkeypatch.setattr(reader, "npy_array", remapped_meanwhile)
    arr = store.array(0, "act.0.npy")
    assert np.array_equal(arr, ActivationStore.open(store_dir).rows("0", *store.shard_rows(0)))
    cached = store._maps.get((0, "act.0.npy"))
    assert cached is None or cached.base is store._mmaps[(0, "act.0.npy")]


def test_passes_share_one_verifier_and_each_file_is_checked_once(store_dir):
    """A pass started, then ``meta`` (another pass) before it is read: one verifier serves
    both, so no file is hashed twice (a second verifier re-checked what the first was
    checking: every activation file twice)."""
    import threading
    from collections import Counter

    before = set(threading.enumerate())
    store = ActivationStore.open(store_dir)
    checked, lock, real = Counter(), threading.Lock(), store._check_file

    def counted(*a, **k):
        with lock:
            checked[a] += 1
        return real(*a, **k)

    store._check_file = counted
    it = store.batches("0", 64, seed=3)
    meta = store.meta["sample_idx"]
    got = torch.cat(list(it))
    for t in set(threading.enumerate()) - before:  # every verifier thread of this test done
        if t.name.startswith("hiddenlens-verify"):
            t.join(60)
    files = ["act.0.npy"] + [info["file"] for info in store.manifest["meta"].values()]
    assert len(files) >= 2 and checked == Counter((i, n) for i in range(store.n_shards) for n in files)
    ref = ActivationStore.open(store_dir, verify=False)
    assert torch.equal(got, torch.cat(list(ref.batches("0", 64, seed=3))))
    assert np.array_equal(meta, ref.meta["sample_idx"])


def test_passes_started_on_two_threads_share_one_verifier(store_dir, monkeypatch):
    """Thread A is creating the verifier when thread B starts a pass: B must extend A's
    verifier, not create a second one (which hashes the same files again). Synchronised
    by events only: B either waits on the store's verifier lock or creates a verifier."""
    import threading

    from hiddenlens.store import reader

    entered, go, either, made = threading.Event(), threading.Event(), threading.Event(), []

    class Held(reader.AheadVerifier):
        def __init__(self, keys, check):
            made.append(keys)
            if len(made) == 1:
                entered.set()
                assert go.wait(60), "the test never let the first verifier go"
            either.set()
            super().__init__(keys, check)

    class Gate:  # the store's verifier lock, telling when a second thread waits on it
        def __init__(self):
            self.lock = threading.Lock()

        def __enter__(self):
            if not self.lock.acquire(blocking=False):
                either.set()
                self.lock.acquire()

        def __exit__(self, *exc):
            self.lock.release()

    monkeypatch.setattr(reader, "AheadVerifier", Held)
    store = ActivationStore.open(store_dir)
    store._ahead_lock = Gate()
    meta = [info["file"] for info in store.manifest["meta"].values()]
    a = threading.Thread(target=store.verify_ahead, args=(["act.0.npy"],))
    a.start()
    assert entered.wait(60)
    b = threading.Thread(target=store.verify_ahead, args=(meta,))
    b.start()
    assert either.wait(60)  # B waits on the lock (one verifier) or made a second one
    go.set()
    a.join(60)
    b.join(60)
    assert len(made) == 1  # B's files went to A's verifier
    assert all(store._ahead.wait((i, n)) for i in range(store.n_shards) for n in meta)
