"""The bottom-level file writer and the metric-key grammar."""

import json

import numpy as np
import pytest

from hiddenlens import _io, _keys


def test_write_json_nan_is_null_and_atomic(tmp_path):
    p = tmp_path / "sub" / "m.json"
    _io.write_json(p, {"a": float("nan"), "b": np.float32(1.5), "c": [np.inf, 2], "d": tmp_path})
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text
    got = json.loads(text)
    assert got == {"a": None, "b": 1.5, "c": [None, 2], "d": str(tmp_path)}
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]  # no temp file left


def test_failed_write_keeps_old_file_and_no_temp(tmp_path):
    p = tmp_path / "x.bin"
    _io.write_bytes(p, b"old")

    def boom(tmp):
        open(tmp, "wb").write(b"partial")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        _io.atomic_write(p, boom)
    assert p.read_bytes() == b"old"
    assert [f.name for f in tmp_path.iterdir()] == ["x.bin"]


def test_write_npy_roundtrip_no_pickle(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    p = _io.write_npy(tmp_path / "a.npy", a)
    np.testing.assert_array_equal(np.load(p, allow_pickle=False), a)
    with pytest.raises(ValueError):
        _io.write_npy(tmp_path / "o.npy", np.array([object()], dtype=object))


def test_read_json_names_file(tmp_path):
    p = tmp_path / "bad.json"
    p.write_bytes(b"\xff{")
    with pytest.raises(ValueError, match="bad.json"):
        _io.read_json(p)


def test_metric_key_grammar():
    assert _keys.metric_key("sae", "fvu", "blocks.1.hook_resid_post") == "sae/fvu/blocks.1.hook_resid_post"
    assert _keys.metric_key("collapse", "nc1") == "collapse/nc1"
    assert _keys.pair("a.0", "a.5") == "a.0~a.5"
    assert _keys.ci_names("accuracy") == ("accuracy_ci_low", "accuracy_ci_high")
    assert _keys.parse_key("probe/cka/a.0~a.5") == ("probe", "cka", "a.0~a.5")
    for bad in [("nc", "nc1", None), ("sae", "a/b", None), ("sae", "x", "a|b"), ("sae", "", None)]:
        with pytest.raises(ValueError):
            _keys.metric_key(*bad)
    with pytest.raises(ValueError):
        _keys.parse_key("nc1")


def test_every_writer_goes_through_io():
    """No module but ``_io`` writes files by hand (temp + rename, write_text, json.dump).

    The one exception is the store's shard *directory* rename (a directory of ``.npy`` files
    written inside a temporary directory that is renamed whole).
    """
    import re
    from pathlib import Path

    import hiddenlens

    root = Path(hiddenlens.__file__).parent
    pattern = re.compile(
        r"os\.replace\(|\.replace\(path\)|mkstemp|(?<!_io)\.write_(?:text|bytes)\(|json\.dump\("
    )
    allowed = {("store/shards.py", "os.replace(")}
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel == "_io.py":
            continue
        for m in pattern.finditer(path.read_text(encoding="utf-8")):
            if (rel, m.group()) not in allowed:
                found.append(f"{rel}: {m.group()}")
    assert not found, found


def test_written_files_get_the_umask_mode_not_0600(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    p = _io.write_json(tmp_path / "m.json", {"a": 1})
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask
