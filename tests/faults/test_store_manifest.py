"""Issue 14 item 2: a corrupted manifest is refused on open (or, for a file's shape and
dtype, when it is first read) with an error naming the field — never wrong or foreign data.
Both layouts: schema 2 (header in manifest.json, records in shards.npy) and schema 1
(records inline in manifest.json, as stores written before issue 20)."""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import torch
import xxhash
from torch import nn

from hiddenlens.store import ActivationStore, cache_activations
from hiddenlens.store import format as fmt
from tests.store.conftest import as_schema1


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
    """A copy of the store whose manifest.json (schema 2: the header) was edited."""
    out = tmp_path / "s"
    shutil.copytree(good, out)
    m = json.loads((out / "manifest.json").read_text())
    edit(m)
    (out / "manifest.json").write_text(json.dumps(m))
    return out


def _corrupt_schema1(good, tmp_path, edit):
    """A copy of the store in the schema-1 layout (shards inline), then edited."""
    out = tmp_path / "s"
    shutil.copytree(good, out)
    as_schema1(out, edit)
    return out


def _corrupt_table(good, tmp_path, edit, *, fix_digest=True):
    """A copy whose shards.npy was edited (and its size and xxh3 in the manifest updated,
    so that the structural checks, not the digest, must catch it)."""
    out = tmp_path / "s"
    shutil.copytree(good, out)
    table = np.load(out / fmt.TABLE, allow_pickle=False)
    table = edit(table.copy())
    raw = io.BytesIO()
    np.save(raw, table, allow_pickle=False)
    (out / fmt.TABLE).write_bytes(raw.getvalue())
    if fix_digest:
        m = json.loads((out / "manifest.json").read_text())
        m["shard_table"].update(bytes=len(raw.getvalue()),
                                xxh3=xxhash.xxh3_128(raw.getvalue()).hexdigest())  # fmt: skip
        (out / "manifest.json").write_text(json.dumps(m))
    return out


SCHEMA1_CASES = {
    "row_start shifted": (lambda m: m["shards"][1].update(row_start=m["shards"][1]["row_start"] + 100),
                          r"shards\[1\]\.row_start=\d+, expected"),
    "meta file dropped from a shard": (lambda m: m["shards"][2]["files"].pop("meta.sample_idx.npy"),
                                       r"shards\[2\]\.files lists"),
    "zero rows": (lambda m: m.update(n_rows=m["n_rows"] - m["shards"][0]["rows"])
                  or m["shards"][0].update(rows=0), r"shards\[0\]\.rows=0"),
    "bad digest": (lambda m: m["shards"][1]["files"]["act.0.npy"].update(sha256="12ab"),
                   r"shards\[1\]\.files\['act\.0\.npy'\]\.sha256='12ab' is not 64 hex"),
    "path in a shard name": (lambda m: m["shards"][0].update(name="../other/shard_00000"),
                             r"shards\[0\]\.name='\.\./other/shard_00000'"),
    "absolute shard name": (lambda m: m["shards"][0].update(name="/etc"), r"shards\[0\]\.name='/etc'"),
    "missing key": (lambda m: m.pop("shards"), "corrupt manifest"),
}  # fmt: skip

HEADER_CASES = {  # the same header in both layouts
    "two hooks one file": (lambda m: m["hooks"]["1"].update(file=m["hooks"]["0"]["file"]),
                           "file names are not unique"),
    "file with a path": (lambda m: m["hooks"]["0"].update(file="../../x.npy"),
                         r"file name '\.\./\.\./x\.npy' is not a plain"),
    "storage dtype": (lambda m: m["hooks"]["0"].update(storage_dtype="float64"),
                      "hook '0' has .*storage_dtype='float64'"),
    "unknown dtype": (lambda m: m["hooks"]["0"].update(dtype="int8"), "dtype must be one of"),
    "meta dtype": (lambda m: m["meta"]["sample_idx"].update(dtype="nonsense"),
                   "meta 'sample_idx' has dtype 'nonsense'"),
    "meta not an object": (lambda m: m.update(meta=None), "meta must be an object .*got None"),
    "meta a string": (lambda m: m.update(meta="x"), "meta must be an object .*got 'x'"),
}  # fmt: skip


def _set(field, i, value):
    def edit(t):
        t[field][i] = value
        return t

    return edit


def _rows_zero(t):
    t["rows"][-1] = 0
    return t


TABLE_CASES = {
    "row_start shifted": (_set("row_start", 1, 17), r"shards\[1\]\.row_start=17, expected"),
    "zero rows": (_rows_zero, r"corrupt manifest .*(n_rows=400 disagrees|shards\[\d\]\.rows=0)"),
    "negative index": (_set("index", 2, -3), r"shards\[2\] has index=-3, rank=-1"),
    "negative size": (lambda t: t["bytes"].__setitem__((0, 1), -5) or t,
                      r"shards\[0\]\.files has a negative size"),
    "a field dropped": (lambda t: np.lib.recfunctions.drop_fields(t, "sample_stop", usemask=False),
                        r"shard table has dtype"),
    "one row short": (lambda t: t[:-1], r"shards\.npy: .* expected \d+ structured rows"),
}  # fmt: skip


LAYOUTS = {  # how each kind of case reaches the store: (make the corrupt copy, cases)
    "schema1": (_corrupt_schema1, {**SCHEMA1_CASES, **HEADER_CASES}),
    "header": (_corrupt, HEADER_CASES),
    "table": (_corrupt_table, TABLE_CASES),
}


@pytest.mark.parametrize(
    "layout,case", [(lay, c) for lay, (_, cases) in LAYOUTS.items() for c in cases]
)
def test_corrupt_manifest_refused_on_open(good, tmp_path, layout, case):
    import numpy.lib.recfunctions  # noqa: F401  (drop_fields, in TABLE_CASES)

    corrupt, cases = LAYOUTS[layout]
    edit, message = cases[case]
    out = corrupt(good, tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        ActivationStore.open(out)


@pytest.mark.parametrize("how", ["flipped", "missing", "table entry"])
def test_damaged_shard_table_named(good, tmp_path, how):
    if how == "flipped":  # a digest in the table changed: the table's own xxh3 catches it
        out = _corrupt_table(good, tmp_path, _set("sha256", 0, 7), fix_digest=False)
        match = r"corrupt shard table .*shards\.npy: its size or xxh3"
    elif how == "missing":
        out = _corrupt(good, tmp_path, lambda m: None)
        (out / fmt.TABLE).unlink()
        match = r"shard table .*shards\.npy is missing"
    else:
        out = _corrupt(good, tmp_path, lambda m: m["shard_table"].update(file="../x.npy"))
        match = r"shard_table must be an object .*naming 'shards\.npy'"
    with pytest.raises(ValueError, match=match):
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
