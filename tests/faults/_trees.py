"""Byte-for-byte comparison of two output directories (a store, an SAE run)."""

from __future__ import annotations

import json
from pathlib import Path

_TIME_KEYS = {"created", "created_at", "timestamp", "time", "finished_at", "started_at"}


def _no_times(obj):
    if isinstance(obj, dict):
        return {k: _no_times(v) for k, v in obj.items() if k not in _TIME_KEYS}
    if isinstance(obj, list):
        return [_no_times(v) for v in obj]
    return obj


def _files(root: Path, skip: tuple[str, ...]) -> set[Path]:
    rels = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
    return {rel for rel in rels if rel.parts[0] not in skip}


def assert_same_tree(a: Path, b: Path, *, skip: tuple[str, ...] = ()) -> None:
    """Same files, same bytes; JSON files compared as content without timestamps."""
    files = _files(a, skip)
    assert files == _files(b, skip)
    for rel in sorted(files):
        x, y = (a / rel).read_bytes(), (b / rel).read_bytes()
        if rel.suffix == ".json":
            assert _no_times(json.loads(x)) == _no_times(json.loads(y)), rel
        else:
            assert x == y, rel
