"""Issue 14 item 2: a corrupted manifest is refused on open (or, for a file's shape and
dtype, when it is first read) with an error naming the field — never wrong or foreign data."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch import nn

from hiddenlens.store import ActivationStore, cache_activations


class _Double(nn.Module):
    def forward(self, x):
        return 2 * x


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    data = torch.randn(400, 6, generator=torch.Generator().manual_seed(0))
    out = tmp_path_factory.mktemp("m") / "s"
    model = nn.Sequential(nn.Identity(), _Double())
    store = cache_activations(model, data, ["0", "1"], out, batch_size=40, shard_size_mb=0.004)
    assert store.n_shards >= 3
    return out


def _corrupt(good, tmp_path, edit):
    out = tmp_path / "s"
    shutil.copytree(good, out)
    m = json.loads((out / "manifest.json").read_text())
    edit(m)
    (out / "manifest.json").write_text(json.dumps(m))
    return out


CASES = {
    "row_start shifted": (lambda m: m["shards"][1].update(row_start=m["shards"][1]["row_start"] + 100),
                          r"shards\[1\]\.row_start=\d+, expected"),
    "path in a shard name": (lambda m: m["shards"][0].update(name="../other/shard_00000"),
                             r"shards\[0\]\.name='\.\./other/shard_00000'"),
    "absolute shard name": (lambda m: m["shards"][0].update(name="/etc"), r"shards\[0\]\.name='/etc'"),
    "two hooks one file": (lambda m: m["hooks"]["1"].update(file=m["hooks"]["0"]["file"]),
                           "file names are not unique"),
    "file with a path": (lambda m: m["hooks"]["0"].update(file="../../x.npy"),
                         r"file name '\.\./\.\./x\.npy' is not a plain"),
    "storage dtype": (lambda m: m["hooks"]["0"].update(storage_dtype="float64"),
                      "hook '0' has .*storage_dtype='float64'"),
    "unknown dtype": (lambda m: m["hooks"]["0"].update(dtype="int8"), "dtype must be one of"),
    "meta file dropped from a shard": (lambda m: m["shards"][2]["files"].pop("meta.sample_idx.npy"),
                                       r"shards\[2\]\.files lists"),
    "zero rows": (lambda m: m.update(n_rows=m["n_rows"] - m["shards"][0]["rows"])
                  or m["shards"][0].update(rows=0), r"shards\[0\]\.rows=0"),
    "missing key": (lambda m: m.pop("shards"), "corrupt manifest"),
    "meta dtype": (lambda m: m["meta"]["sample_idx"].update(dtype="nonsense"),
                   "meta 'sample_idx' has dtype 'nonsense'"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_manifest_refused_on_open(good, tmp_path, case):
    edit, message = CASES[case]
    out = _corrupt(good, tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        ActivationStore.open(out)


def test_undecodable_manifest_is_a_clear_error(good, tmp_path):
    out = tmp_path / "s"
    shutil.copytree(good, out)
    (out / "manifest.json").write_bytes(b"\xff\xfe{not json")
    with pytest.raises(ValueError, match="corrupt manifest"):
        ActivationStore.open(out)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["hooks"]["0"].update(d=3),  # wrong width: would reshape garbage
        lambda m: m["hooks"]["0"].update(dtype="float16", storage_dtype="float16"),
    ],
)
def test_wrong_width_or_dtype_named_when_first_read(good, tmp_path, edit):
    store = ActivationStore.open(_corrupt(good, tmp_path, edit))
    with pytest.raises(ValueError, match=r"act\.0\.npy: its \.npy header says float32 \(\d+, 6\)"):
        store.rows("0")
    assert store.rows("1").shape == (400, 6)  # the other hook is intact
