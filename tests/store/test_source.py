"""The ActivationSource contract: the store and the in-memory source read the same rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hiddenlens.store import (
    ActivationStore,
    MemorySource,
    as_source,
    top_rows,
)
from hiddenlens.store.source import SourceView, is_source, select_hooks, single_hook
from tests.store.conftest import ID_ROWS as N


@pytest.fixture(scope="module")
def pair(id_store):
    """A multi-shard store and a MemorySource over the very same rows and meta."""
    assert id_store.n_shards > 3
    mem = MemorySource({h: id_store.rows(h) for h in id_store.hook_points}, meta=id_store.meta)
    return id_store, mem


def test_both_implement_the_protocol(pair):
    for src in pair:
        assert is_source(src)
        assert as_source(src) is src
    assert not is_source(np.zeros((3, 2)))


def test_same_rows_meta_and_stats(pair):
    store, mem = pair
    assert mem.hook_points == store.hook_points and len(mem) == len(store) == N
    for h in store.hook_points:
        assert mem.d(h) == store.d(h) == 6
        for a, b in [(0, N), (13, 377), (120, 120), (999, 1000)]:
            assert np.array_equal(mem.rows(h, a, b), store.rows(h, a, b))
        s_store, s_mem = store.stats(h), mem.stats(h)
        assert s_store["count"] == s_mem["count"] == N
        for key in ("mean", "var", "mean_norm"):
            np.testing.assert_allclose(s_mem[key], s_store[key], rtol=1e-9, atol=1e-9)
        x = store.rows(h).astype(np.float64)  # the closed forms
        np.testing.assert_allclose(s_mem["mean"], x.mean(0), rtol=1e-9)
        np.testing.assert_allclose(s_mem["var"], x.var(0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(s_mem["mean_norm"], np.linalg.norm(x, axis=1).mean())
    assert set(mem.meta) == set(store.meta)
    for name, col in store.meta.items():
        assert np.array_equal(mem.meta[name], col)


@pytest.mark.parametrize(
    "kw",
    [
        dict(shuffle=False),
        dict(seed=4, block_rows=7),
        dict(seed=1, block_rows=1, drop_last=True),
        dict(seed=2, block_rows=16, rank=1, world_size=3),
        dict(seed=5, block_rows=3, rank=1, world_size=2, interleave=True, start_batch=2),
    ],
)
def test_same_batches(pair, kw):
    """Same rows in every batch for the same arguments (order inside a batch may differ:
    the store groups a batch's rows by shard); a one-shard view equals the store exactly."""
    store, mem = pair
    got_store = list(store.batches(["0", "1"], 32, **kw))
    got_mem = list(mem.batches(["0", "1"], 32, **kw))
    assert len(got_store) == len(got_mem) > 0
    for (a0, _), (b0, b1) in zip(got_store, got_mem):
        assert b0.dtype == torch.float32 and b0.shape == a0.shape
        assert torch.equal(b1, 2 * b0)  # hooks stay row-aligned
        assert torch.equal(a0[:, 0].sort().values, b0[:, 0].sort().values)
        if not kw.get("shuffle", True):
            assert torch.equal(a0, b0)


def test_memory_default_is_a_row_level_shuffle(pair):
    _, mem = pair
    ids = torch.cat(list(mem.batches("0", 100, seed=0)))[:, 0].long().numpy()
    explicit = torch.cat(list(mem.batches("0", 100, seed=0, block_rows=1)))[:, 0].long().numpy()
    assert np.array_equal(ids, explicit)
    assert np.array_equal(ids, np.random.default_rng(0).permutation(N))


def test_as_source_on_each_input(pair):
    store, _ = pair
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    one = as_source(x, meta={"label": [0, 1, 0, 1]})
    assert one.hook_points == ["activations"] and np.array_equal(one.rows("activations"), x)
    assert np.array_equal(one.meta["label"], [0, 1, 0, 1])
    t = as_source({"a": torch.from_numpy(x).to(torch.bfloat16), "b": torch.from_numpy(x)})
    assert t.rows("a").dtype == np.float32 and np.array_equal(t.rows("b"), x)
    view = as_source((store, "1"))
    assert isinstance(view, SourceView) and view.hook_points == ["1"]
    assert np.array_equal(view.rows("1", 5, 9), store.rows("1", 5, 9))
    with pytest.raises(ValueError, match="'0' is not in this source"):
        view.rows("0")
    labelled = as_source(store, meta={"y": np.arange(N) % 3})
    assert np.array_equal(labelled.meta["y"], np.arange(N) % 3)
    assert "sample_idx" in labelled.meta  # the store's own columns stay
    assert single_hook(view) == "1" and select_hooks(store) == ["0", "1"]


def test_bad_inputs_are_named(pair):
    store, _ = pair
    with pytest.raises(TypeError, match="cannot read activations from list.*accepted"):
        as_source([[1.0, 2.0]])
    with pytest.raises(ValueError, match="must be 2-D"):
        as_source(np.zeros(5))
    with pytest.raises(ValueError, match="different row counts"):
        as_source({"a": np.zeros((3, 2)), "b": np.zeros((4, 2))})
    with pytest.raises(ValueError, match="meta column 'y' must be 1-D with one entry per row"):
        as_source(np.zeros((3, 2)), meta={"y": [1, 2]})
    with pytest.raises(ValueError, match=r"hook points \['nope'\] are not in the source"):
        as_source((store, "nope"))
    with pytest.raises(TypeError, match="must be numeric"):
        as_source(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"row range \[3, 9\) is outside \[0, 4\]"):
        as_source(np.zeros((4, 2))).rows("activations", 3, 9)
    with pytest.raises(ValueError, match="several hook points"):
        single_hook(store)


def test_top_rows_finds_planted_rows(pair):
    store, mem = pair
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4))
    planted = [417, 3, 250, 99]  # descending planted values in column 2
    x[planted, 2] = [9.0, 8.0, 7.0, 6.0]
    x[[10, 20], 1] = 50.0  # a tie in column 1: the earlier row first
    src = as_source(x, meta={"sample_idx": np.arange(N) // 10})
    top = top_rows(src, "activations", lambda r: r[:, 2], 4, chunk_rows=37)
    assert top.rows.tolist() == planted and top.values.tolist() == [9.0, 8.0, 7.0, 6.0]
    assert top.meta["sample_idx"].tolist() == [41, 0, 25, 9]
    multi = top_rows(src, "activations", lambda r: r, 2, chunk_rows=64)
    assert multi.rows.shape == (4, 2) and multi.rows[2].tolist() == planted[:2]
    assert multi.rows[1].tolist() == [10, 20]
    assert top_rows(src, "activations", lambda r: r[:, 2], 2, stop=300).rows.tolist() == [3, 250]
    # the store and its in-memory copy agree, and torch scores are accepted
    fn = lambda r: torch.from_numpy(np.asarray(r, dtype=np.float32)).sum(1)  # noqa: E731
    a, b = top_rows(store, "1", fn, 5), top_rows(mem, "1", fn, 5, chunk_rows=33)
    assert np.array_equal(a.rows, b.rows) and np.array_equal(a.values, b.values)
    assert set(a.to_dict()) == {"row", "value", *store.meta}
    with pytest.raises(ValueError, match="k must be a positive int"):
        top_rows(src, "activations", lambda r: r[:, 0], 0)
    with pytest.raises(ValueError, match="score_fn must return"):
        top_rows(src, "activations", lambda r: r[:3, 0], 2)


def test_store_is_not_loaded_by_the_protocol_check(pair, monkeypatch):
    store, _ = pair
    fresh = ActivationStore.open(store.path)
    assert as_source(fresh) is fresh and fresh._meta is None  # meta not read
