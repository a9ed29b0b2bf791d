"""The on-disk format of an activation store (documented in docs/store_format.md).

A store is one directory::

    manifest.json            written last and atomically: the store is complete
    shards.npy               written just before it: every shard's record, one fixed-width row
                             per shard (schema 2; table.py); schema-1 manifests list them inline
    progress.json            only while a run is unfinished: the run's header (the manifest
                             without shards), written at the start and once the layout is known
    shards.jsonl             only while a run is unfinished: the shard log, one JSON line per
                             completed shard, appended and fsynced (what a re-run resumes from)
    shard_00000/             one directory per shard, renamed into place when complete
        act.<hook>.npy       [rows, d] activations of one hook point (float32/float16/uint16)
        meta.<name>.npy      [rows] sample_idx (int64), position (int32), token_id, labels
        stats.<hook>.npy     [2, d] float64: per-shard sum and sum of squares of the rows

Every file is a plain ``.npy`` (memory-mappable, readable with ``np.load`` and no pickles);
the shard table lists each one's size, sha256 and xxh3. Running statistics are merged from per-shard sums in float64
(Chan, Golub & LeVeque 1979 note the cancellation risk of sum-of-squares; in float64 it is
negligible for activations whose mean is not ~1e7 times their spread).
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from hiddenlens import _io
from hiddenlens.store.table import TABLE, ShardTable

MANIFEST = "manifest.json"
PROGRESS = "progress.json"
SHARD_LOG = "shards.jsonl"
FORMAT_NAME = "hiddenlens.activation_store"
SCHEMA_VERSION = 2  # 2: shard records in shards.npy; 1: listed in manifest.json (still read)
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


def layout_files(hooks: dict[str, HookInfo], meta: dict[str, dict[str, Any]]) -> list[str]:
    """The files every shard holds, in layout order (each hook's rows and stats, then meta)."""
    out = [f for info in hooks.values() for f in (info.file, info.stats_file)]
    return out + [info.get("file") if isinstance(info, dict) else info for info in meta.values()]


def write_manifest(path: str | Path, manifest: Manifest) -> None:
    """Write the shard table, then ``manifest.json`` naming it, each atomically.

    The manifest stays small whatever the shard count (its header plus the table's size and
    digests); the table is one structured ``.npy`` array (:mod:`hiddenlens.store.table`).
    """
    import xxhash

    path = Path(path)
    table = manifest.shards
    if not isinstance(table, ShardTable):
        files = layout_files(manifest.hooks, manifest.meta)
        table = ShardTable.from_records(list(table), files, list(manifest.hooks))
    buf = io.BytesIO()
    np.save(buf, table.array, allow_pickle=False)
    raw = buf.getvalue()
    _io.write_bytes(path.parent / TABLE, raw)
    entry = {"file": TABLE, "count": len(table), "files": table.files, "hooks": table.hooks,
             "bytes": len(raw), "xxh3": xxhash.xxh3_128(raw).hexdigest(),
             "sha256": hashlib.sha256(raw).hexdigest()}  # fmt: skip
    _io.write_json(path, dict(manifest.to_dict(shards=False), shard_table=entry), indent=1)


def read_table(directory: Path, entry: Any) -> ShardTable:
    """The shard table a schema-2 manifest names: size and xxh3 checked, then mapped."""
    from hiddenlens.store.verify import buffer_digest, map_file, npy_array

    keys = {"file", "count", "files", "hooks", "bytes", "xxh3"}
    if not isinstance(entry, dict) or not keys <= set(entry) or entry["file"] != TABLE:
        raise ValueError(f"shard_table must be an object with {sorted(keys)} naming {TABLE!r}, "
                         f"got {entry!r}")  # fmt: skip
    path = directory / TABLE
    if not path.is_file():
        raise ValueError(f"the shard table {path} is missing")
    mm = map_file(path)
    if len(mm) != entry["bytes"] or buffer_digest(mm, "xxh3") != entry["xxh3"]:
        raise ValueError(
            f"corrupt shard table {path}: its size or xxh3 does not match the manifest's "
            f"({len(mm)} bytes, the manifest says {entry['bytes']})"
        )
    array = npy_array(mm, path)
    if len(array) != entry["count"] or array.dtype.names is None:
        raise ValueError(f"corrupt shard table {path}: {array.dtype} {array.shape}, expected "
                         f"{entry['count']} structured rows")  # fmt: skip
    return ShardTable(array, entry["files"], entry["hooks"])


def write_npy(path: str | Path, chunks: list[np.ndarray], dtype: np.dtype) -> dict[str, Any]:
    """Write the row-concatenation of ``chunks`` as one ``.npy`` file without concatenating.

    Returns the file's manifest entry ``{"sha256", "xxh3", "bytes"}`` (xxh3-128, the fast
    digest checked on read). The chunks must share ``dtype`` and trailing shape.
    """
    import xxhash

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
    digest, fast = hashlib.sha256(head.getvalue()), xxhash.xxh3_128(head.getvalue())
    with open(path, "wb") as fh:
        fh.write(head.getvalue())
        for c in chunks:
            if c.dtype != dtype or c.shape[1:] != tail:
                raise ValueError(f"chunk {c.dtype}{c.shape} does not match {dtype}{tail}")
            buf = memoryview(np.ascontiguousarray(c)).cast("B")
            fh.write(buf)
            digest.update(buf)
            fast.update(buf)
        fh.flush()
        os.fsync(fh.fileno())
        size = fh.tell()
    return {"sha256": digest.hexdigest(), "xxh3": fast.hexdigest(), "bytes": size}


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
    # records {"name", "rows", "row_start", "sample_stop", "data_sha256", "sum_norm", "files"}:
    # a list while writing (and in schema-1 manifests), a ShardTable once read from disk
    shards: list[dict[str, Any]] | ShardTable
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
        if isinstance(self.shards, ShardTable):
            total = int(self.shards.rows.sum())
        else:
            total = sum(s["rows"] for s in self.shards)
        if self.n_rows != total:
            raise ValueError(f"manifest n_rows={self.n_rows} disagrees with its shard list")

    def to_dict(self, *, shards: bool = True) -> dict[str, Any]:
        """The manifest as JSON-ready dicts; ``shards=False`` leaves the shard records out."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "shards"}
        out = copy.deepcopy(out | {"hooks": {k: asdict(v) for k, v in self.hooks.items()}})
        if shards:
            out["shards"] = list(self.shards) if isinstance(self.shards, ShardTable) else (
                copy.deepcopy(list(self.shards)))  # fmt: skip
        order = ["format", "schema_version", "library_version", "complete", "n_rows"]
        return {k: out[k] for k in order} | {k: v for k, v in out.items() if k not in order}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> Manifest:
        obj = dict(obj)
        obj["hooks"] = {k: HookInfo(**v) for k, v in obj["hooks"].items()}
        return cls(**obj)

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read ``manifest.json`` (or ``progress.json``) and, for schema 2, its shard table."""
        path = Path(path)
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
        if isinstance(obj, dict) and "shard_table" in obj and "shards" not in obj:
            obj["shards"] = read_table(path.parent, obj.pop("shard_table"))
        return cls.from_dict(obj)


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


FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\.npy")  # no path parts, no dot files


def check_manifest(m: Manifest, path: str | Path) -> ShardTable:
    """Validate a loaded manifest's structure; return its shard table. A ValueError names the
    bad field.

    Checks what reading trusts: hook and metadata layouts (d, dtype, storage dtype, safe and
    unique file names) and the shard records: shard directories (``shard_NNNNN``, or
    ``rank_NNN/shard_NNNNN`` in a merged multi-rank store; never a path), row counts and
    cumulative ``row_start``, every layout file listed for every shard. A schema-2 table is
    checked with a few vectorised comparisons (a 100,000-shard store in milliseconds); a
    schema-1 list record by record, into a table. Each file's size, digest and ``.npy``
    header are checked when it is first read.
    """

    def bad(what: str) -> ValueError:
        return ValueError(f"corrupt manifest {path}: {what}")

    for h, info in m.hooks.items():
        if type(info.d) is not int or info.storage_dtype != STORAGE_DTYPE[info.dtype]:
            raise bad(f"hook {h!r} has d={info.d!r}, dtype={info.dtype!r}, "
                      f"storage_dtype={info.storage_dtype!r}")  # fmt: skip
    if not isinstance(m.meta, dict):
        raise bad(f"meta must be an object of metadata layouts, got {m.meta!r}")
    for name, info in m.meta.items():
        if not isinstance(info, dict) or not {"dtype", "file"} <= set(info):
            raise bad(f"meta {name!r} needs 'dtype' and 'file', got {info!r}")
        try:
            np.dtype(info["dtype"])
        except TypeError as err:
            raise bad(f"meta {name!r} has dtype {info['dtype']!r}") from err
    expected = layout_files(m.hooks, m.meta)
    for f in expected:
        if not isinstance(f, str) or not FILE_NAME.fullmatch(f):
            raise bad(f"file name {f!r} is not a plain .npy name")
    if len(set(expected)) != len(expected):
        raise bad(f"file names are not unique: {expected}")
    if isinstance(m.shards, ShardTable):
        m.shards.check(set(expected), set(m.hooks), bad)
        return m.shards
    if not isinstance(m.shards, list):
        raise bad(f"shards must be a list, got {type(m.shards).__name__}")
    return ShardTable.from_records(m.shards, expected, list(m.hooks), bad)
