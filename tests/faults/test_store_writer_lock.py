"""Issue 14 item 5: two writers in one store directory. The second fails at once with a
message naming the owner (it used to delete the first one's in-flight shard); a lock left
by a dead process is taken over; a finished store leaves no lock or progress files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading

import pytest
import torch
from torch import nn

from hiddenlens.store import ActivationStore, cache_activations
from hiddenlens.store import format as fmt
from hiddenlens.store.lock import LOCK, StoreLockedError


class _Gate(nn.Module):
    """Identity that blocks its first forward call until released (a writer mid-run)."""

    def __init__(self):
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def forward(self, x):
        if not self.release.is_set():
            self.entered.set()
            assert self.release.wait(60)
        return x


def _data():
    return torch.randn(200, 4, generator=torch.Generator().manual_seed(0))


def test_second_writer_fails_at_once_and_first_finishes(tmp_path):
    out, gate, result = tmp_path / "s", _Gate(), {}
    model = nn.Sequential(gate, nn.Identity())

    def first():
        result["store"] = cache_activations(model, _data(), ["1"], out, batch_size=20)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert gate.entered.wait(60)  # the first writer holds the lock and is running
        owner = json.loads((out / LOCK).read_text())
        assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
        with pytest.raises(StoreLockedError, match=rf"pid {os.getpid()} on host"):
            cache_activations(nn.Sequential(nn.Identity(), nn.Identity()), _data(), ["1"], out)
        with pytest.raises(StoreLockedError, match="being written by another process"):
            cache_activations(model, _data(), ["1"], out, overwrite=True)
    finally:
        gate.release.set()
        t.join(60)
    store = result["store"]
    assert len(store) == 200 and torch.equal(torch.from_numpy(store.rows("1").copy()), _data())
    left = {p.name for p in out.iterdir()}
    assert LOCK not in left and fmt.PROGRESS not in left and fmt.SHARD_LOG not in left


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    pid = int(dead.stdout)  # that process has exited
    (out / LOCK).write_text(json.dumps({"pid": pid, "host": socket.gethostname()}))
    model = nn.Sequential(nn.Identity(), nn.Identity())
    store = cache_activations(model, _data(), ["1"], out, batch_size=50)
    assert len(store) == 200 and not (out / LOCK).exists()


def test_lock_of_another_host_is_reported_not_broken(tmp_path):
    out = tmp_path / "s"
    out.mkdir()
    (out / LOCK).write_text(json.dumps({"pid": 1, "host": "some-other-node"}))
    with pytest.raises(StoreLockedError, match="'some-other-node'.*delete the lock file"):
        cache_activations(nn.Sequential(nn.Identity()), _data(), ["0"], out)
    assert (out / LOCK).exists()  # not ours to remove


def test_stale_progress_beside_a_manifest_is_cleaned(tmp_path):
    """A crash between writing manifest.json and removing progress.json / the shard log."""
    out, model = tmp_path / "s", nn.Sequential(nn.Identity(), nn.Identity())
    cache_activations(model, _data(), ["1"], out, batch_size=50)
    (out / fmt.PROGRESS).write_text("{}")
    (out / fmt.SHARD_LOG).write_text("{}\n")
    store = cache_activations(model, _data(), ["1"], out, batch_size=50)
    assert len(store) == 200 and len(ActivationStore.open(out)) == 200
    assert not (out / fmt.PROGRESS).exists() and not (out / fmt.SHARD_LOG).exists()
