"""kill -9 at a seeded random point, then a rerun: the result is byte-identical to a clean run.

The kill is timed on an observed file event (the k-th shard in ``progress.json``, the k-th
complete checkpoint), with k drawn from a seeded RNG, never on wall time, and the worker
blocks before it could finish until it is killed ("hold"), so the kill lands mid-run
however loaded the machine is.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hiddenlens.store import format as fmt
from tests.faults._kill_worker import _checkpoints
from tests.faults._trees import assert_same_tree

WORKER = Path(__file__).with_name("_kill_worker.py")
ROOT = Path(__file__).parents[2]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT))


def _worker(*args) -> list[str]:
    return [sys.executable, str(WORKER), *map(str, args)]


def _kill_when(cmd: list[str], ready, what: str) -> None:
    """Start ``cmd``, SIGKILL it as soon as ``ready()`` holds; it must still be running."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the worker ended (rc {proc.returncode}) before {what}"
        assert ready(), f"timed out waiting for {what}"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _shards_done(out: Path) -> int:
    """Complete lines of the shard log (the worker may be appending the next one)."""
    try:
        return (out / fmt.SHARD_LOG).read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "store"
    subprocess.run(_worker("cache", out, 0), env=_env(), check=True)
    return out


@pytest.mark.parametrize("seed", [0])
def test_kill9_of_caching_then_rerun_is_byte_identical(tmp_path, clean_store, seed):
    k = random.Random(seed).randint(1, 5)  # of the 8 shards, kill after the k-th is recorded
    out = tmp_path / "store"
    # "hold": the worker blocks at its last batch, so however late the parent looks it is
    # still mid-run (the sleep only spreads where, after the k-th shard, the kill lands)
    _kill_when(_worker("cache", out, 0.03, "hold"), lambda: _shards_done(out) >= k, f"shard {k}")
    assert not (out / "manifest.json").exists()
    assert k <= _shards_done(out) < 8
    subprocess.run(_worker("cache", out, 0), env=_env(), check=True)  # the same command again
    assert_same_tree(out, clean_store)  # shards, manifest; no run log, lock or temp file


def test_kill9_of_train_sae_then_rerun_is_byte_identical(tmp_path, clean_store):
    k = random.Random(2).randint(1, 8)  # of the 10 checkpoints, kill after the k-th
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    _kill_when(
        _worker("train", clean_store, killed, 0.04, "hold"), lambda: _checkpoints(killed) >= k,
        f"checkpoint {k}",
    )  # fmt: skip
    assert not (killed / "metrics.json").exists() and _checkpoints(killed) < 10
    subprocess.run(_worker("train", clean_store, killed, 0), env=_env(), check=True)
    subprocess.run(_worker("train", clean_store, clean, 0), env=_env(), check=True)
    assert_same_tree(killed, clean, skip=("checkpoints",))  # weights, cfg.json, metrics
    last = "checkpoints/step_00000040"
    assert_same_tree(killed / last, clean / last)  # the resumed run's own last checkpoint
