"""A full disk while caching: a clear error, no torn shard counted, and a resume after space
is freed that is byte-identical to an uninterrupted run.

Two ways: the shard writer's ``write_npy`` raising ``ENOSPC`` at a seeded k-th file
(everywhere), and a real tmpfs of a seeded size that fills up (where this process may
mount one, i.e. as root), which also hits ``progress.json`` and the directory renames.
"""

from __future__ import annotations

import errno
import hashlib
import json
import random
import subprocess
from pathlib import Path

import pytest

from hiddenlens.store import format as fmt
from tests.faults._trees import assert_same_tree
from tests.store._resume_worker import run as cache  # 400 rows, 8 shards, 2 hooks, labels


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "store"
    cache(str(out), 0)
    return out


def _assert_counted_shards_whole(out: Path) -> int:
    """Every shard the shard log counts is on disk with the bytes it recorded."""
    assert not (out / "manifest.json").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(fmt.TMP_PREFIX)]
    log = out / fmt.SHARD_LOG
    shards = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    for shard in shards:
        for name, info in shard["files"].items():
            data = (out / shard["name"] / name).read_bytes()
            assert hashlib.sha256(data).hexdigest() == info["sha256"], (shard["name"], name)
    return len(shards)


@pytest.mark.parametrize("seed", [0, 1])
def test_enospc_at_the_kth_file_then_resume(tmp_path, clean_store, monkeypatch, seed):
    k = random.Random(seed).randint(7, 40)  # 6 files a shard: fails inside shard (k-1)//6
    real, calls = fmt.write_npy, []

    def full_disk(path, chunks, dtype):
        calls.append(path)
        if len(calls) == k:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, chunks, dtype)

    monkeypatch.setattr(fmt, "write_npy", full_disk)
    out = tmp_path / "store"
    with pytest.raises(OSError, match=r"No space left on device.*re-run the same call"):
        cache(str(out), 0)
    assert _assert_counted_shards_whole(out) == (k - 1) // 6
    monkeypatch.setattr(fmt, "write_npy", real)  # space freed
    cache(str(out), 0)
    assert_same_tree(out, clean_store)


def test_enospc_while_logging_a_shard_names_the_log_then_resume(tmp_path, clean_store, monkeypatch):
    """The disk fills exactly when the shard's log line is written: the message names the
    shard log and the fix (it was a bare ``OSError``), and a re-run redoes that shard."""
    from hiddenlens.store import shardlog

    real, calls = shardlog.append_shard_record, []

    def full_disk(out, record):
        calls.append(record["name"])
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(out, record)

    monkeypatch.setattr(shardlog, "append_shard_record", full_disk)
    out = tmp_path / "store"
    with pytest.raises(OSError, match=r"shard_00002 in the shard log.*re-run the same call"):
        cache(str(out), 0)
    assert _assert_counted_shards_whole(out) == 2
    monkeypatch.setattr(shardlog, "append_shard_record", real)
    cache(str(out), 0)
    assert_same_tree(out, clean_store)


def _mount_tmpfs(where: Path, size_kb: int) -> None:
    where.mkdir()
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here; the simulated ENOSPC test covers this")
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}); simulated test covers it")


def test_a_real_full_tmpfs_then_resume_after_growing_it(tmp_path, clean_store):
    disk = tmp_path / "disk"
    size_kb = random.Random(3).randint(60, 200)  # the whole store needs ~290 KB of pages
    _mount_tmpfs(disk, size_kb)
    try:
        out = disk / "store"
        with pytest.raises(OSError, match="No space left on device"):
            cache(str(out), 0)
        assert 0 <= _assert_counted_shards_whole(out) < 8
        subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        cache(str(out), 0)
        assert_same_tree(out, clean_store)
    finally:
        subprocess.run(["umount", str(disk)], check=False)
