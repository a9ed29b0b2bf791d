"""The shard log: one fsynced line per shard, a torn last line repaired, the manifest once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hiddenlens import _io
from hiddenlens.store import ActivationStore, cache_activations, shardlog
from hiddenlens.store import format as fmt
from tests.store.conftest import InterruptAfter

DATA = torch.randn(600, 8, generator=torch.Generator().manual_seed(5))
KW = dict(batch_size=25, shard_size_mb=0.002)  # ~2 batches per shard


def _interrupted(out, n_calls):
    with pytest.raises(KeyboardInterrupt):
        cache_activations(nn.Sequential(InterruptAfter(n_calls)), DATA, ["0"], out, **KW)


def test_log_has_one_line_per_shard_and_the_header_no_shards(tmp_path):
    out = tmp_path / "s"
    _interrupted(out, 12)
    lines = (out / fmt.SHARD_LOG).read_text().splitlines()
    records = [json.loads(x) for x in lines]
    assert len(records) >= 3
    assert [r["name"] for r in records] == [fmt.shard_name(i) for i in range(len(records))]
    assert [r["row_start"] for r in records] == list(
        np.cumsum([0] + [r["rows"] for r in records])[:-1]
    )
    header = json.loads((out / fmt.PROGRESS).read_text())
    assert header["shards"] == [] and header["hooks"]["0"]["d"] == 8  # layout, no shard list
    state = shardlog.load_progress(out)
    assert state.shards == records and state.n_rows == sum(r["rows"] for r in records)
    assert state.sample_stop == records[-1]["sample_stop"]


@pytest.mark.parametrize("tear", ["half_line", "garbage_line", "no_newline_json"])
def test_torn_last_line_is_repaired_and_the_shard_redone(tmp_path, tear):
    out, ref = tmp_path / "s", tmp_path / "ref"
    _interrupted(out, 12)
    log = out / fmt.SHARD_LOG
    data = log.read_bytes()
    body, last = (
        data[: data.rstrip(b"\n").rfind(b"\n") + 1],
        data[data.rstrip(b"\n").rfind(b"\n") + 1 :],
    )
    n_before = data.count(b"\n")
    torn = {
        "half_line": body + last[: len(last) // 2],
        "garbage_line": body + b"\x00\x00\x00\n",
        "no_newline_json": body + last.rstrip(b"\n"),
    }[tear]
    log.write_bytes(torn)
    state = shardlog.load_progress(out)  # repairs the file
    assert len(state.shards) == n_before - 1 and log.read_bytes() == body
    store = cache_activations(nn.Sequential(nn.Identity()), DATA, ["0"], out, **KW)
    reference = cache_activations(nn.Sequential(nn.Identity()), DATA, ["0"], ref, **KW)
    assert np.array_equal(store.rows("0"), reference.rows("0"))
    assert np.array_equal(store.meta["sample_idx"], np.arange(600))
    assert store.manifest["shards"] == reference.manifest["shards"]


def test_corrupt_line_before_the_last_is_an_error(tmp_path):
    out = tmp_path / "s"
    _interrupted(out, 12)
    log = out / fmt.SHARD_LOG
    lines = log.read_bytes().split(b"\n")
    log.write_bytes(b"\n".join([b"{not json"] + lines[1:]))
    with pytest.raises(ValueError, match=r"corrupt shard log .*line 1 is unreadable"):
        shardlog.load_progress(out)
    swapped = [lines[1], lines[0], *lines[2:]]
    log.write_bytes(b"\n".join(swapped))
    with pytest.raises(ValueError, match="expected 'shard_00000' at row 0"):
        shardlog.load_progress(out)


def test_manifest_written_once_and_progress_files_removed(tmp_path, monkeypatch):
    writes = []
    real = _io.write_json
    monkeypatch.setattr(
        _io, "write_json", lambda p, o, **kw: (writes.append(Path(p).name), real(p, o, **kw))
    )
    out = tmp_path / "s"
    store = cache_activations(nn.Sequential(nn.Identity()), DATA, ["0"], out, **KW)
    assert store.n_shards >= 5
    # the header at the start and once the layout is known, the manifest at the end
    assert writes == [fmt.PROGRESS, fmt.PROGRESS, fmt.MANIFEST]
    assert sorted(p.name for p in out.iterdir() if not p.is_dir()) == [fmt.MANIFEST, fmt.TABLE]
    assert len(ActivationStore.open(out)) == 600


def test_legacy_progress_json_with_a_shard_list_resumes(tmp_path):
    """An unfinished run from before the shard log (progress.json lists its shards)."""
    out, ref = tmp_path / "s", tmp_path / "ref"
    _interrupted(out, 12)
    state = shardlog.load_progress(out)
    _io.write_json(out / fmt.PROGRESS, state.to_dict())  # the old layout
    (out / fmt.SHARD_LOG).unlink()
    store = cache_activations(nn.Sequential(nn.Identity()), DATA, ["0"], out, **KW)
    reference = cache_activations(nn.Sequential(nn.Identity()), DATA, ["0"], ref, **KW)
    assert store.manifest["shards"] == reference.manifest["shards"]
