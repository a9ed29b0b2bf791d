"""The on-disk format of an activation store (documented in docs/store_format.md).

A store is one directory::

    manifest.json            written last and atomically: the store is complete
    progress.json            only while a run is unfinished (what a re-run resumes from)
    shard_00000/             one directory per shard, renamed into place when complete
        act.<hook>.npy       [rows, d] activations of one hook point (float32/float16/uint16)
        meta.<name>.npy      [rows] sample_idx (int64), position (int32), token_id, labels
        stats.<hook>.npy     [2, d] float64: per-shard sum and sum of squares of the rows

Every file is a plain ``.npy`` (memory-mappable, readable with ``np.load`` and no pickles);
the manifest lists its sha256. Running statistics are merged from per-shard sums in float64
(Chan, Golub & LeVeque 1979 note the cancellation risk of sum-of-squares; in float64 it is
negligible for activations whose mean is not ~1e7 times their spread).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hiddenlens import _io

MANIFEST = "manifest.json"
PROGRESS = "progress.json"
FORMAT_NAME = "hiddenlens.activation_store"
SCHEMA_VERSION = 1
SHARD_PREFIX = "shard_"
TMP_PREFIX = _io.TMP_PREFIX  # temporaries (shard dirs, JSON files) that readers skip
DTYPES = ("float32", "float16", "bfloat16")
# bfloat16 has no numpy dtype: its bits are stored as uint16 and the manifest says bfloat16.
STORAGE_DTYPE = {"float32": "float32", "float16": "float16", "bfloat16": "uint16"}


def library_version() -> str:
    """The installed hiddenlens version (``"unknown"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hiddenlens")
    except PackageNotFoundError:
        return "unknown"


def safe_name(name: str) -> str:
    """A file-name-safe form of a hook or metadata name (``#``/``:`` etc. become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def file_names(names: Iterable[str], prefix: str) -> dict[str, str]:
    """Map names to unique ``<prefix>.<safe>.npy`` file names (a suffix breaks collisions)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        base = f"{prefix}.{safe_name(name)}"
        candidate, i = base, 1
        while candidate in used:
            candidate, i = f"{base}-{i}", i + 1
        used.add(candidate)
        out[name] = candidate + ".npy"
    return out


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:05d}"


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB chunks (hashlib releases the GIL on big chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_npy(path: str | Path, chunks: list[np.ndarray], dtype: np.dtype) -> tuple[str, int]:
    """Write the row-concatenation of ``chunks`` as one ``.npy`` file without concatenating.

    Returns (sha256 hex, bytes). The chunks must share ``dtype`` and trailing shape.
    """
    dtype = np.dtype(dtype)
    rows = sum(len(c) for c in chunks)
    tail = chunks[0].shape[1:] if chunks else ()
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": (rows, *tail),
    }
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, header)
    digest = hashlib.sha256(head.getvalue())
    with open(path, "wb") as fh:
        fh.write(head.getvalue())
        for c in chunks:
            if c.dtype != dtype or c.shape[1:] != tail:
                raise ValueError(f"chunk {c.dtype}{c.shape} does not match {dtype}{tail}")
            buf = memoryview(np.ascontiguousarray(c)).cast("B")
            fh.write(buf)
            digest.update(buf)
        fh.flush()
        os.fsync(fh.fileno())
        size = fh.tell()
    return digest.hexdigest(), size


@dataclass
class HookInfo:
    """One hook point (or ``<hook>#grad``) as stored: width, dtype and running statistics."""

    d: int
    dtype: str
    storage_dtype: str
    file: str
    stats_file: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    shape: list[int] | None = None  # one example's activation before flattening (or None)

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.d < 1:
            raise ValueError(f"d must be >= 1, got {self.d}")


@dataclass
class Manifest:
    """Everything needed to read, trust and reproduce a store (``manifest.json``)."""

    run: dict[str, Any]  # model fingerprint, hooks, data fingerprint, settings: the run's identity
    hooks: dict[str, HookInfo]
    meta: dict[str, dict[str, Any]]  # name -> {"dtype", "file"[, "names": string labels]}
    n_rows: int
    # {"name", "rows", "row_start", "sample_stop", "data_sha256", "sum_norm", "files"}
    shards: list[dict[str, Any]]
    sample_stop: int = 0
    library_version: str = field(default_factory=library_version)
    format: str = FORMAT_NAME
    schema_version: int = SCHEMA_VERSION
    complete: bool = False

    def __post_init__(self) -> None:
        if self.format != FORMAT_NAME:
            raise ValueError(f"not a hiddenlens store manifest: format={self.format!r}")
        if self.schema_version > SCHEMA_VERSION:
            raise ValueError(
                f"store schema version {self.schema_version} is newer than this hiddenlens "
                f"reads ({SCHEMA_VERSION}); upgrade hiddenlens"
            )
        if self.n_rows != sum(s["rows"] for s in self.shards):
            raise ValueError(f"manifest n_rows={self.n_rows} disagrees with its shard list")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        order = ["format", "schema_version", "library_version", "complete", "n_rows"]
        return {k: out[k] for k in order} | {k: v for k, v in out.items() if k not in order}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Manifest:
        obj = dict(obj)
        obj["hooks"] = {k: HookInfo(**v) for k, v in obj["hooks"].items()}
        return cls(**obj)

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))


def finalize_stats(count: int, total: np.ndarray, total_sq: np.ndarray, sum_norm: float) -> dict:
    """mean, population variance (ddof=0) and mean L2 norm from float64 running sums."""
    mean = total / max(count, 1)
    var = np.maximum(total_sq / max(count, 1) - mean * mean, 0.0)
    return {
        "count": int(count),
        "mean": mean.tolist(),
        "var": var.tolist(),
        "mean_norm": float(sum_norm / max(count, 1)),
    }
