"""The shard table: every shard's record as one fixed-width row of ``shards.npy``.

A store with 100,000 shards listed inline in ``manifest.json`` (schema 1) is a ~100 MB
JSON document whose parse alone takes seconds. Since schema 2 the records are one
structured ``.npy`` array (one row per shard, a fixed-width column per field, digests as
raw bytes), written atomically beside the manifest, which names it with its size and
digests and gives the column order of ``files`` and ``hooks``. Opening maps the table,
checks its digest and validates it with a few vectorised comparisons; a shard's record is
built as a dict only when asked for. It stays readable without hiddenlens::

    t = np.load("shards.npy", allow_pickle=False)          # structured array, one row per shard
    t["rows"], t["row_start"]                              # int64
    t["sha256"][i, j].tobytes().hex()                      # file manifest["shard_table"]["files"][j]
    name = f"shard_{t['index'][i]:05d}"                    # "rank_RRR/" before it when t["rank"][i] >= 0
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

TABLE = "shards.npy"
RANKED = re.compile(r"rank_(\d{3,})/shard_(\d{5,})")
PLAIN = re.compile(r"shard_(\d{5,})")
DIGESTS = {"sha256": 32, "xxh3": 16}  # raw bytes per file digest
SIZES = {**DIGESTS, "data_sha256": 32}
RECORD_KEYS = {"name", "rows", "row_start", "sample_stop", "data_sha256", "sum_norm", "files"}


def table_dtype(n_files: int, n_hooks: int, *, xxh3: bool, data: bool) -> np.dtype:
    """The structured dtype of a table of ``n_files`` files and ``n_hooks`` hooks per shard."""
    fields = [("rows", "<i8"), ("row_start", "<i8"), ("sample_stop", "<i8"),
              ("rank", "<i8"), ("index", "<i8"), ("bytes", "<i8", (n_files,)),
              ("sha256", "u1", (n_files, 32))]  # fmt: skip
    if xxh3:
        fields.append(("xxh3", "u1", (n_files, 16)))
    fields.append(("sum_norm", "<f8", (n_hooks,)))
    if data:
        fields.append(("data_sha256", "u1", (32,)))
    return np.dtype(fields)


class ShardTable(Sequence):
    """Read-only sequence of shard records (dicts, built on access) over a structured array.

    ``files`` and ``hooks`` name the columns of the per-file and per-hook fields.
    """

    def __init__(self, array: np.ndarray, files: list[str], hooks: list[str]):
        self.array, self.files, self.hooks = array, list(files), list(hooks)
        self._col = {f: j for j, f in enumerate(self.files)}
        self.rows = np.ascontiguousarray(array["rows"]) if len(array) else np.zeros(0, np.int64)
        self.row_start = np.ascontiguousarray(array["row_start"]) if len(array) else self.rows

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.record(i)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self.record(i) for i in range(len(self)))

    def name(self, i: int) -> str:
        """The shard's directory, relative to the store (``[rank_RRR/]shard_NNNNN``)."""
        rank, index = int(self.array["rank"][i]), int(self.array["index"][i])
        return f"{'' if rank < 0 else f'rank_{rank:03d}/'}shard_{index:05d}"

    def entry(self, i: int, file: str) -> dict[str, Any]:
        """``{"sha256", "xxh3", "bytes"}`` of file ``file`` of shard ``i`` (xxh3 if recorded)."""
        j, row = self._col[file], self.array[i]
        out = {"sha256": row["sha256"][j].tobytes().hex()}
        if "xxh3" in self.array.dtype.names:
            out["xxh3"] = row["xxh3"][j].tobytes().hex()
        out["bytes"] = int(row["bytes"][j])
        return out

    def record(self, i: int) -> dict[str, Any]:
        """Shard ``i``'s record, as in the shard log and a schema-1 manifest."""
        i = range(len(self))[i]  # negative indices; IndexError past the end
        row = self.array[i]
        out = {"name": self.name(i), "rows": int(row["rows"]), "row_start": int(row["row_start"]),
               "sample_stop": int(row["sample_stop"])}  # fmt: skip
        if "data_sha256" in self.array.dtype.names:
            out["data_sha256"] = row["data_sha256"].tobytes().hex()
        out["sum_norm"] = {h: float(v) for h, v in zip(self.hooks, row["sum_norm"])}
        out["files"] = {f: self.entry(i, f) for f in self.files}
        return out

    def check(self, files: set[str], hooks: set[str], bad: Callable[[str], Exception]) -> None:
        """Vectorised validation of what reading trusts; raises ``bad(what)`` on the first fault."""
        if set(self.files) != files or len(self.files) != len(files):
            raise bad(f"shard table lists files {self.files}, expected {sorted(files)}")
        if set(self.hooks) != hooks or len(self.hooks) != len(hooks):
            raise bad(f"shard table lists hooks {self.hooks}, expected {sorted(hooks)}")
        want = table_dtype(len(files), len(hooks), xxh3="xxh3" in self.array.dtype.names,
                           data="data_sha256" in self.array.dtype.names)  # fmt: skip
        if self.array.ndim != 1 or self.array.dtype != want:
            raise bad(f"shard table has dtype {self.array.dtype} shape {self.array.shape}, "
                      f"expected {want} [n]")  # fmt: skip
        a, rows = self.array, self.rows
        expected = np.cumsum(rows) - rows
        _first(rows < 1, lambda i: bad(f"shards[{i}].rows={rows[i]} is not a positive int"))
        _first(self.row_start != expected, lambda i: bad(
            f"shards[{i}].row_start={self.row_start[i]}, expected {expected[i]} (the rows before it)"))  # fmt: skip
        _first((a["index"] < 0) | (a["rank"] < -1), lambda i: bad(
            f"shards[{i}] has index={a['index'][i]}, rank={a['rank'][i]}: not a shard directory"))  # fmt: skip
        _first((a["bytes"] < 0).any(axis=1), lambda i: bad(f"shards[{i}].files has a negative size"))

    @classmethod
    def from_records(cls, records: list, files: list[str], hooks: list[str], bad=ValueError):
        """Build a table from shard-log / schema-1 records, validating each one (by index)."""
        xxh3 = all(isinstance(r, dict) and _has_xxh3(r) for r in records)
        data = all(isinstance(r, dict) and "data_sha256" in r for r in records)
        arr = np.zeros(len(records), table_dtype(len(files), len(hooks), xxh3=xxh3, data=data))
        cols: dict[str, list] = {k: [] for k in ("rows", "row_start", "sample_stop", "rank",
                                                 "index", "bytes", "sum_norm")}  # fmt: skip
        hexes: dict[str, list[str]] = {k: [] for k in (*DIGESTS, "data_sha256")}
        row = 0
        for i, r in enumerate(records):
            _check_record(i, r, files, hooks, row, bad)
            row += r["rows"]
            for k in ("rows", "row_start", "sample_stop"):
                cols[k].append(r[k])
            rank, index = _split_name(r["name"])
            cols["rank"].append(rank)
            cols["index"].append(index)
            cols["bytes"].append([r["files"][f]["bytes"] for f in files])
            cols["sum_norm"].append([np.nan if r["sum_norm"][h] is None else r["sum_norm"][h]
                                     for h in hooks])  # fmt: skip
            for kind in DIGESTS:
                if kind in arr.dtype.names:
                    hexes[kind] += [r["files"][f][kind] for f in files]
            if data:
                hexes["data_sha256"].append(r["data_sha256"])
        if records:
            for k, v in cols.items():
                arr[k] = np.asarray(v, dtype=arr.dtype[k].base).reshape(arr[k].shape)
            for k, v in hexes.items():
                if k in arr.dtype.names:
                    where = (lambda j, k=k: f"shards[{j}].{k}") if k == "data_sha256" else (
                        lambda j, k=k: f"shards[{j // len(files)}].files[{files[j % len(files)]!r}].{k}")  # fmt: skip
                    arr[k] = _unhex(v, SIZES[k], where, bad).reshape(arr[k].shape)
        return cls(arr, files, hooks)


def _first(mask: np.ndarray, error: Callable[[int], Exception]) -> None:
    hits = np.flatnonzero(mask)
    if len(hits):
        raise error(int(hits[0]))


def _has_xxh3(r: dict) -> bool:
    files = r.get("files")
    return isinstance(files, dict) and all(isinstance(e, dict) and "xxh3" in e for e in files.values())


def _split_name(name: Any) -> tuple[int, int] | None:
    if not isinstance(name, str):
        return None
    m = RANKED.fullmatch(name)
    if m:
        return int(m[1]), int(m[2])
    m = PLAIN.fullmatch(name)
    return (-1, int(m[1])) if m else None


def _unhex(values: list, n: int, where: Callable[[int], str], bad) -> np.ndarray:
    """Hex digests of ``n`` bytes each as one uint8 array; a bad one is named (``where(k)``)."""
    for k, v in enumerate(values):
        if not isinstance(v, str) or len(v) != 2 * n:
            raise bad(f"{where(k)}={v!r} is not {2 * n} hex digits")
    try:
        return np.frombuffer(bytes.fromhex("".join(values)), np.uint8)
    except ValueError:
        k = next(k for k, v in enumerate(values) if not _is_hex(v))
        raise bad(f"{where(k)}={values[k]!r} is not {2 * n} hex digits") from None


def _is_hex(v: str) -> bool:
    try:
        bytes.fromhex(v)
        return True
    except ValueError:
        return False


def _check_record(i: int, r: Any, files: list[str], hooks: list[str], row: int, bad) -> None:
    """Check shard record ``i`` (its rows start at global row ``row``)."""
    if not isinstance(r, dict):
        raise bad(f"shards[{i}] is not an object")
    name, rows, start, entries = r.get("name"), r.get("rows"), r.get("row_start"), r.get("files")
    if _split_name(name) is None:
        raise bad(f"shards[{i}].name={name!r} is not a shard directory name")
    if type(rows) is not int or rows < 1:
        raise bad(f"shards[{i}].rows={rows!r} is not a positive int")
    if start != row:
        raise bad(f"shards[{i}].row_start={start!r}, expected {row} (the rows before it)")
    if not isinstance(entries, dict) or entries.keys() != set(files):
        got = sorted(entries) if isinstance(entries, dict) else entries
        raise bad(f"shards[{i}].files lists {got}, expected {sorted(files)}")
    stop, norms = r.get("sample_stop"), r.get("sum_norm")
    if type(stop) is not int or not isinstance(norms, dict) or norms.keys() != set(hooks):
        raise bad(f"shards[{i}] needs an int sample_stop and sum_norm for {hooks}, got "
                  f"{stop!r} and {norms!r}")  # fmt: skip
    for f, e in entries.items():
        if not isinstance(e, dict) or type(e.get("bytes")) is not int:
            raise bad(f"shards[{i}].files[{f!r}]={e!r} needs an int 'bytes'")
