"""Bad input and damaged stores fail loudly, and never leave a manifest claiming completeness."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens import _io
from hiddenlens.store import ActivationStore, cache_activations, shardlog
from hiddenlens.store import format as fmt


def test_different_run_refused_then_overwrite(tmp_path, mlp_model, tensor_data):
    out = tmp_path / "s"
    cache_activations(mlp_model, tensor_data, ["0"], out)
    with pytest.raises(FileExistsError, match="hooks"):
        cache_activations(mlp_model, tensor_data, ["2"], out)
    with pytest.raises(FileExistsError, match="data"):
        cache_activations(mlp_model, tensor_data + 1, ["0"], out)
    with pytest.raises(FileExistsError, match="settings.dtype"):
        cache_activations(mlp_model, tensor_data, ["0"], out, dtype="float16")
    store = cache_activations(mlp_model, tensor_data, ["2"], out, overwrite=True)
    assert store.hook_points == ["2"] and store.d("2") == 4


def test_unfinished_different_run_refused(tmp_path, mlp_model, tensor_data):
    out = tmp_path / "s"
    fmt.Manifest(run={"hooks": ["x"]}, hooks={}, meta={}, n_rows=0, shards=[])
    out.mkdir()
    _io.write_json(
        out / fmt.PROGRESS,
        fmt.Manifest(run={"hooks": ["x"]}, hooks={}, meta={}, n_rows=0, shards=[]).to_dict(),
        indent=1,
    )
    with pytest.raises(FileExistsError, match="different run"):
        cache_activations(mlp_model, tensor_data, ["0"], out)
    with pytest.raises(ValueError, match="unfinished"):
        ActivationStore.open(out)


def test_foreign_directory_never_deleted(tmp_path, mlp_model, tensor_data):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not a hiddenlens store"):
        cache_activations(mlp_model, tensor_data, ["0"], tmp_path)
    with pytest.raises(FileExistsError, match="refusing to delete"):
        cache_activations(mlp_model, tensor_data, ["0"], tmp_path, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_corrupt_shard_named(tmp_path, mlp_model, tensor_data):
    cache_activations(mlp_model, tensor_data, ["0", "2"], tmp_path / "s", shard_size_mb=0.004)
    target = tmp_path / "s" / "shard_00001" / "act.2.npy"
    raw = bytearray(target.read_bytes())
    raw[-5] ^= 0xFF  # flip bits in the last row
    target.write_bytes(bytes(raw))
    store = ActivationStore.open(tmp_path / "s")
    store.rows("0")  # other files are fine
    with pytest.raises(ValueError, match="shard_00001/act.2.npy"):
        store.rows("2")
    with pytest.raises(ValueError, match="shard_00001/act.2.npy"):
        list(ActivationStore.open(tmp_path / "s").batches("2", 64))
    with pytest.raises(ValueError, match="(?s)verification failed.*shard_00001/act.2.npy"):
        ActivationStore.open(tmp_path / "s").verify()
    target.write_bytes(bytes(raw[:-100]))  # truncated
    with pytest.raises(ValueError, match="truncated"):
        ActivationStore.open(tmp_path / "s").rows("2")


def test_nonfinite_names_hook_and_batch(tmp_path, tensor_data):
    data = tensor_data.clone()
    data[70, 3] = float("nan")  # sample 70 -> batch 2 with batch_size 32
    model = nn.Sequential(nn.Linear(8, 4), nn.ReLU())
    with pytest.raises(ValueError, match=r"hook '0' in batch 2 .*samples 64\.\.95"):
        cache_activations(model, data, ["0", "1"], tmp_path / "a", batch_size=32)
    assert not (tmp_path / "a" / "manifest.json").exists()
    store = cache_activations(
        model, data, ["0"], tmp_path / "b", batch_size=32, allow_nonfinite=True
    )
    assert np.isnan(store.rows("0")[70]).all()


def test_float16_overflow_is_nonfinite(tmp_path, tensor_data):
    model = nn.Sequential(nn.Linear(8, 4))
    with torch.no_grad():
        model[0].weight.fill_(1e5)
    with pytest.raises(ValueError, match="float16"):
        cache_activations(model, tensor_data, ["0"], tmp_path / "a", dtype="float16")


def test_empty_data(tmp_path, mlp_model):
    with pytest.raises(ValueError, match="empty"):
        cache_activations(mlp_model, torch.empty(0, 8), ["0"], tmp_path / "a")
    with pytest.raises(ValueError, match="empty"):
        cache_activations(mlp_model, [], ["0"], tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    with pytest.raises(ValueError, match="no rows"):  # an iterable that yields nothing
        cache_activations(mlp_model, iter(()), ["0"], tmp_path / "c")
    assert not (tmp_path / "c").exists()


def test_unwritable_output(tmp_path, mlp_model, tensor_data):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot write the activation store"):
        cache_activations(mlp_model, tensor_data, ["0"], blocker / "store")
    with pytest.raises(NotADirectoryError):
        cache_activations(mlp_model, tensor_data, ["0"], blocker)


def test_disk_full_leaves_no_manifest_and_resumes(tmp_path, mlp_model, tensor_data, monkeypatch):
    real = fmt.write_npy
    calls = []

    def flaky(path, chunks, dtype):
        calls.append(path)
        if len(calls) > 6:  # the second shard's files fail
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, chunks, dtype)

    monkeypatch.setattr(fmt, "write_npy", flaky)
    out = tmp_path / "s"
    kwargs = dict(batch_size=32, shard_size_mb=0.004)
    with pytest.raises(OSError, match="No space left.*re-run"):
        cache_activations(mlp_model, tensor_data, ["0", "2"], out, **kwargs)
    assert not (out / "manifest.json").exists()
    assert not any(p.name.startswith(".tmp") for p in out.iterdir())
    assert len(shardlog.load_progress(out).shards) == 1
    monkeypatch.setattr(fmt, "write_npy", real)
    store = cache_activations(mlp_model, tensor_data, ["0", "2"], out, **kwargs)
    with torch.no_grad():
        assert np.array_equal(store.rows("2"), mlp_model(tensor_data).numpy())


def test_bad_arguments(tmp_path, mlp_model, tensor_data):
    with pytest.raises(ValueError, match="dtype"):
        cache_activations(mlp_model, tensor_data, ["0"], tmp_path / "a", dtype="int8")
    with pytest.raises(ValueError, match="max_rows"):
        cache_activations(mlp_model, tensor_data, ["0"], tmp_path / "a", max_rows=0)
    with pytest.raises(ValueError, match="batch_size"):
        cache_activations(mlp_model, tensor_data, ["0"], tmp_path / "a", batch_size=0)
    store = cache_activations(mlp_model, tensor_data, ["0"], tmp_path / "b")
    with pytest.raises(ValueError, match="not in this store"):
        store.rows("nope")
    with pytest.raises(ValueError, match="rank"):
        store.batches("0", 8, rank=2, world_size=2)
    with pytest.raises(FileNotFoundError):
        ActivationStore.open(tmp_path / "missing")


def test_a_rows_misfit_found_in_the_forward_pass_leaves_nothing_behind(tmp_path):
    """rows='position' on a flat activation fails at the first batch; the corrected call
    in the same directory must not be refused as "a different run"."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(100, 5))
    x, out = torch.randn(12, 3, 5, 5), tmp_path / "s"
    with pytest.raises(ValueError, match=r"rows='position' needs a channels-first map"):
        cache_activations(model, x, ["1"], out, rows="position", batch_size=4)
    assert not out.exists()
    store = cache_activations(model, x, ["0"], out, rows="position", batch_size=4)
    assert len(store) == 12 * 25
