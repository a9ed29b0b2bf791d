"""Interrupted runs resume after the last complete shard: nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens.store import ActivationStore, cache_activations, shardlog
from hiddenlens.store import format as fmt
from tests.store.conftest import InterruptAfter as _InterruptAfter

WORKER = Path(__file__).with_name("_resume_worker.py")


def _assert_same_store(a: ActivationStore, b: ActivationStore) -> None:
    assert len(a) == len(b) and a.hook_points == b.hook_points
    for hook in a.hook_points:
        assert np.array_equal(a.rows(hook), b.rows(hook))
        np.testing.assert_allclose(a.stats(hook)["mean"], b.stats(hook)["mean"], rtol=1e-12)
    assert a.meta.keys() == b.meta.keys()
    for key in a.meta:
        assert np.array_equal(a.meta[key], b.meta[key])


def _shards_done(out: Path) -> int:
    """Complete lines of the shard log (the worker may be appending the next one)."""
    try:
        return (out / fmt.SHARD_LOG).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_sigkill_mid_cache_then_rerun_equals_uninterrupted(tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]))
    # "hold": the worker blocks at its last batch until killed, so it is still running
    # however late a loaded parent notices shard 2
    proc = subprocess.Popen([sys.executable, str(WORKER), str(out), "0.03", "hold"], env=env)
    try:
        deadline = time.time() + 120
        while _shards_done(out) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "worker finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "manifest.json").exists()
    done = shardlog.load_progress(out)
    assert 0 < done.n_rows < 400
    # re-run the same command (a new process, as a user would), and a clean run to compare
    for target in (out, tmp_path / "reference"):
        subprocess.run([sys.executable, str(WORKER), str(target), "0"], env=env, check=True)
    resumed, reference = ActivationStore.open(out), ActivationStore.open(tmp_path / "reference")
    _assert_same_store(resumed, reference)
    assert np.array_equal(resumed.meta["sample_idx"], np.arange(400))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_ctrl_c_then_rerun_equals_uninterrupted(tmp_path, tensor_data, dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), _InterruptAfter(7), nn.Linear(16, 16))
    kwargs = dict(batch_size=16, shard_size_mb=0.002, dtype=dtype)
    with pytest.raises(KeyboardInterrupt):
        cache_activations(model, tensor_data, ["0", "2"], tmp_path / "a", **kwargs)
    assert not (tmp_path / "a" / "manifest.json").exists()
    assert 0 < shardlog.load_progress(tmp_path / "a").n_rows < 300
    resumed = cache_activations(model, tensor_data, ["0", "2"], tmp_path / "a", **kwargs)
    reference = cache_activations(model, tensor_data, ["0", "2"], tmp_path / "b", **kwargs)
    _assert_same_store(resumed, reference)
    assert not (tmp_path / "a" / "progress.json").exists()


def test_rerun_of_finished_call_reuses_store(tmp_path, mlp_model, tensor_data):
    cache_activations(mlp_model, tensor_data, ["0"], tmp_path / "s")
    stamp = (tmp_path / "s" / "manifest.json").stat().st_mtime_ns
    calls = []
    handle = mlp_model[0].register_forward_hook(lambda *a: calls.append(1))
    store = cache_activations(mlp_model, tensor_data, ["0"], tmp_path / "s")
    handle.remove()
    assert calls == [] and len(store) == 300
    assert (tmp_path / "s" / "manifest.json").stat().st_mtime_ns == stamp
    cache_activations(mlp_model, tensor_data, ["0"], tmp_path / "s", overwrite=True)
    assert (tmp_path / "s" / "manifest.json").stat().st_mtime_ns != stamp  # recomputed


def test_max_rows_resume(tmp_path, mlp_model, tensor_data):
    kwargs = dict(batch_size=16, shard_size_mb=0.002, max_rows=250)
    model = nn.Sequential(mlp_model[0], _InterruptAfter(10))
    with pytest.raises(KeyboardInterrupt):
        cache_activations(model, tensor_data, ["1"], tmp_path / "a", **kwargs)
    resumed = cache_activations(model, tensor_data, ["1"], tmp_path / "a", **kwargs)
    assert len(resumed) == 250
    with torch.no_grad():
        assert np.array_equal(resumed.rows("1"), mlp_model[0](tensor_data[:250]).numpy())


def _interrupted(tmp_path, data, **kwargs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), _InterruptAfter(7), nn.Linear(16, 16))
    with pytest.raises(KeyboardInterrupt):
        cache_activations(model, data, ["0", "2"], tmp_path / "a", **kwargs)
    shards = shardlog.load_progress(tmp_path / "a").shards
    assert [s["sample_stop"] for s in shards] == [32, 64, 96]  # 2 batches of 16 per shard
    return model


@pytest.mark.parametrize("as_loader", [False, True])
def test_resume_over_data_changed_after_the_first_shard_is_refused(
    tmp_path, tensor_data, as_loader
):
    """Reliability defect 3: a DataLoader differing after batch 1 used to resume and mix."""

    def wrap(x):
        ds = torch.utils.data.TensorDataset(x)
        return torch.utils.data.DataLoader(ds, batch_size=16) if as_loader else x

    kwargs = dict(batch_size=16, shard_size_mb=0.002)
    model = _interrupted(tmp_path, wrap(tensor_data), **kwargs)
    changed = tensor_data.clone()
    changed[40] += 1  # sample 40 lies in shard_00001
    with pytest.raises(FileExistsError, match=r"shard_00001 \(samples 32\.\.63\)"):
        cache_activations(model, wrap(changed), ["0", "2"], tmp_path / "a", **kwargs)
    # data changed only where no shard was written yet: the resume is the run on that data
    later = tensor_data.clone()
    later[200] += 1
    resumed = cache_activations(model, wrap(later), ["0", "2"], tmp_path / "a", **kwargs)
    reference = cache_activations(model, wrap(later), ["0", "2"], tmp_path / "b", **kwargs)
    _assert_same_store(resumed, reference)


def test_finished_store_over_changed_data_is_refused(tmp_path, mlp_model, tensor_data):
    kwargs = dict(batch_size=32, shard_size_mb=0.004)
    store = cache_activations(mlp_model, tensor_data, ["0"], tmp_path / "s", **kwargs)
    last = store.manifest["shards"][-1]["name"]
    changed = tensor_data.clone()
    changed[-1, 0] += 1
    with pytest.raises(FileExistsError, match=rf"differs in: data, first in {last}"):
        cache_activations(mlp_model, changed, ["0"], tmp_path / "s", **kwargs)
    with pytest.raises(FileExistsError, match="differs in: data"):  # a label changed
        cache_activations(mlp_model, tensor_data, ["0"], tmp_path / "s", labels=[0] * 300, **kwargs)
    again = cache_activations(mlp_model, tensor_data.clone(), ["0"], tmp_path / "s", **kwargs)
    assert len(again) == 300
