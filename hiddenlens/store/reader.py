"""Read an activation store: memory-mapped rows, metadata, statistics, checksums.

Every shard file is verified against its size and xxh3 in the shard table the first time
it is read, through the memory map its rows are then sliced from
(``ActivationStore.verify()`` checks every sha256 at once); nothing is unpickled (``.npy``
headers parsed without pickles, JSON only).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiddenlens.store import format as fmt
from hiddenlens.store.loader import row_range
from hiddenlens.store.verify import AheadVerifier, buffer_digest, file_digest, map_file, npy_array


class ActivationStore:
    """A finished store on disk. Open with :meth:`ActivationStore.open`."""

    def __init__(self, path: Path, manifest: fmt.Manifest, *, verify: bool = True):
        self.path = Path(path)
        self._manifest = manifest
        self._verify = verify
        self._verified: set[tuple[int, str]] = set()
        self._maps: dict[tuple[int, str], np.ndarray] = {}  # verified arrays, ready to slice
        self._mmaps: dict[tuple[int, str], object] = {}  # one memory map per file: hashed, sliced
        self._max_maps = max_open_maps()  # each map holds a file descriptor
        self._lock = threading.Lock()
        self._meta: dict[str, np.ndarray] | None = None
        self._ahead: AheadVerifier | None = None
        self._ahead_lock = threading.Lock()  # passes started on two threads: one verifier
        if not isinstance(manifest.shards, fmt.ShardTable):
            raise TypeError("open a store with ActivationStore.open (its shards are a table)")
        self._table: fmt.ShardTable = manifest.shards
        self._starts = self._table.row_start

    @classmethod
    def open(cls, path: str | Path, *, verify: bool = True) -> ActivationStore:
        """Open the store in ``path``; ``verify=False`` skips the lazy checksum checks."""
        path = Path(path).expanduser()
        if not (path / fmt.MANIFEST).is_file():
            if (path / fmt.PROGRESS).is_file():
                raise ValueError(
                    f"{path} holds an unfinished cache run (no {fmt.MANIFEST}); "
                    "re-run the same cache_activations call to resume it"
                )
            raise FileNotFoundError(f"no activation store at {path} (missing {fmt.MANIFEST})")
        try:
            manifest = fmt.Manifest.load(path / fmt.MANIFEST)
        except (ValueError, KeyError, TypeError, AttributeError) as err:  # JSON / Unicode too
            raise ValueError(f"corrupt manifest {path / fmt.MANIFEST}: {err}") from err
        manifest.shards = fmt.check_manifest(manifest, path / fmt.MANIFEST)
        if not manifest.complete:
            raise ValueError(f"{path / fmt.MANIFEST} does not mark the store complete")
        return cls(path, manifest, verify=verify)

    # -- description -------------------------------------------------------------------
    @property
    def hook_points(self) -> list[str]:
        """Stored hook names (including ``"<hook>#grad"`` entries)."""
        return list(self._manifest.hooks)

    @property
    def manifest(self) -> dict[str, Any]:
        """The manifest as one dict, shard records listed (built on each call: O(shards))."""
        return self._manifest.to_dict()

    def __len__(self) -> int:
        return self._manifest.n_rows

    def __repr__(self) -> str:
        return f"ActivationStore({str(self.path)!r}, rows={len(self)}, hooks={self.hook_points})"

    def _info(self, hook: str) -> fmt.HookInfo:
        if hook not in self._manifest.hooks:
            raise ValueError(f"hook {hook!r} is not in this store; stored: {self.hook_points}")
        return self._manifest.hooks[hook]

    def d(self, hook: str) -> int:
        """Width of the rows stored for ``hook``."""
        return self._info(hook).d

    def dtype(self, hook: str) -> str:
        """Stored dtype name of ``hook`` (``float32``, ``float16`` or ``bfloat16``)."""
        return self._info(hook).dtype

    def stats(self, hook: str) -> dict[str, Any]:
        """Running statistics over all rows: mean [d], var [d] (ddof=0), mean_norm, count."""
        s = self._info(hook).stats
        nan = float("nan")  # NaN is stored as JSON null (only with allow_nonfinite)
        return {
            "mean": np.asarray(s["mean"], dtype=np.float64),
            "var": np.asarray(s["var"], dtype=np.float64),
            "mean_norm": nan if s["mean_norm"] is None else float(s["mean_norm"]),
            "count": int(s["count"]),
        }

    # -- files and checksums -----------------------------------------------------------
    @property
    def n_shards(self) -> int:
        return len(self._table)

    def shard_rows(self, shard: int) -> tuple[int, int]:
        """Global (start, stop) row range of shard ``shard``."""
        start = int(self._starts[shard])
        return start, start + int(self._table.rows[shard])

    def _path(self, shard: int, name: str) -> Path:
        return self.path / self._table.name(shard) / name

    def _mapping(self, shard: int, name: str):
        """The one read-only memory map of a file (created on first use, by any thread).

        Each open map holds a file descriptor, so at most ``max_open_maps()`` are kept: the
        least recently created is dropped (with its array; arrays still in use keep their
        map alive) and mapped again when needed. Its verification is remembered.
        """
        key = (shard, name)
        with self._lock:
            mm = self._mmaps.get(key)
            if mm is None:
                mm = self._mmaps[key] = map_file(self._path(shard, name))
                while len(self._mmaps) > self._max_maps:
                    old = next(iter(self._mmaps))
                    del self._mmaps[old]
                    self._maps.pop(old, None)
        return mm

    def _check_file(self, shard: int, name: str, strong: bool = False) -> None:
        """Size and digest of one file (xxh3 when recorded, else or if ``strong`` sha256).

        The lazy check hashes the memory map the rows are then read from; ``strong`` (the
        full ``verify``) hashes a temporary map, so checking a store holds no maps open.
        """
        path = self._path(shard, name)
        expected = self._table.entry(shard, name)
        if not path.is_file():
            raise FileNotFoundError(f"store file missing: {path}")
        size = path.stat().st_size
        if size != expected["bytes"]:
            raise ValueError(
                f"corrupt store file {path}: {size} bytes, the manifest says "
                f"{expected['bytes']} (truncated or overwritten?)"
            )
        kind = "sha256" if strong or "xxh3" not in expected else "xxh3"
        digest = file_digest(path, kind) if strong else buffer_digest(self._mapping(shard, name), kind)
        if digest != expected[kind]:
            raise ValueError(
                f"corrupt store file {path}: {kind} {digest} does not match the "
                f"manifest's {expected[kind]}"
            )

    def array(self, shard: int, name: str, wait: bool = True) -> np.ndarray | None:
        """The memory-mapped array of file ``name`` in shard ``shard`` (verified once).

        ``wait=False``: None instead of waiting while a background thread checks the file.
        """
        key = (shard, name)
        arr = self._maps.get(key)
        if arr is not None:
            return arr
        if self._verify and key not in self._verified:
            ahead = self._ahead
            if ahead is not None and not wait and ahead.busy(key):
                return None
            if ahead is None or not ahead.wait(key):  # not queued: check it here
                self._check_file(shard, name)
            self._verified.add(key)
        path, mm = self._path(shard, name), self._mapping(shard, name)
        arr = npy_array(mm, path)  # a plain ndarray view of the map
        dtype, shape = self._expected(shard, name)
        if arr.dtype != dtype or arr.shape != shape:
            raise ValueError(
                f"corrupt store file {path}: its .npy header says {arr.dtype} {arr.shape}, "
                f"the manifest {dtype} {shape}"
            )
        with self._lock:
            # Another thread (a reader, or the verifier hashing ahead) may have dropped this
            # file's map since we mapped it (and maybe mapped the file again); caching the
            # array then would keep more maps alive than ``_max_maps`` allows. The array
            # itself stays valid either way.
            if self._mmaps.get(key) is mm:
                self._maps[key] = arr
        return arr

    def _expected(self, shard: int, name: str) -> tuple[np.dtype, tuple[int, ...]]:
        """(dtype, shape) the manifest implies for file ``name`` of ``shard``."""
        rows = int(self._table.rows[shard])
        for info in self._manifest.hooks.values():
            if name == info.file:
                return np.dtype(info.storage_dtype), (rows, info.d)
            if name == info.stats_file:
                return np.dtype(np.float64), (2, info.d)
        for info in self._manifest.meta.values():
            if name == info["file"]:
                return np.dtype(info["dtype"]), (rows,)
        raise ValueError(f"{name!r} is not a file of this store's layout")

    def verify_ahead(self, names: list[str], first_use=None) -> None:
        """Start checking files ``names`` of every shard on background threads.

        Called when a pass over the store begins (``batches``, ``meta``); ``first_use()``,
        called only if some file is unchecked, gives the shards in the order the pass first
        needs them (the others follow in storage order; default: storage order). Reading
        still waits for a file's check before using its rows.
        """
        if not self._verify:
            return

        def unchecked(order):
            return [(i, n) for i in order for n in names if (i, n) not in self._verified]

        keys = unchecked(range(self.n_shards))
        if keys and first_use is not None:
            keys = unchecked(_all_shards(first_use(), self.n_shards))
        if not keys:
            return
        with self._ahead_lock:  # one verifier for every pass: none hashes what another checks
            if self._ahead is None:
                self._ahead = AheadVerifier(keys, lambda key: self._check_file(*key))
            else:
                self._ahead.extend(keys)

    def verify(self) -> None:
        """Check every file's size and sha256 now; raise naming each corrupt file."""
        problems = []
        for i in range(self.n_shards):
            for name in self._table.files:
                try:
                    self._check_file(i, name, strong=True)
                    self._verified.add((i, name))
                except (ValueError, FileNotFoundError) as err:
                    problems.append(str(err))
        if problems:
            raise ValueError("store verification failed:\n" + "\n".join(problems))

    # -- rows ----------------------------------------------------------------------------
    def _pieces(self, start: int, stop: int) -> Iterator[tuple[int, int, int]]:
        """(shard, local start, local stop) covering global rows [start, stop)."""
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        for shard in range(max(first, 0), self.n_shards):
            lo, hi = self.shard_rows(shard)
            if lo >= stop:
                break
            yield shard, max(start, lo) - lo, min(stop, hi) - lo

    def rows(self, hook: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows [start, stop) of ``hook`` as ``[n, d]``.

        A range inside one shard is a read-only memory map (no copy); a range spanning
        shards is copied into one array. bfloat16 stores are returned as float32 copies.
        """
        info = self._info(hook)
        start, stop = row_range(start, stop, len(self))
        parts = [self.array(s, info.file)[a:b] for s, a, b in self._pieces(start, stop)]
        if not parts:
            out = np.empty((0, info.d), dtype=info.storage_dtype)
        else:
            out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if info.dtype == "bfloat16":
            out = bf16_to_float32(out)
        return out

    @property
    def meta(self) -> dict[str, np.ndarray]:
        """Row metadata aligned with the rows: sample_idx, position, token_id, labels."""
        if self._meta is None:
            self.verify_ahead([info["file"] for info in self._manifest.meta.values()])
            self._meta = {
                name: np.concatenate([self.array(i, info["file"]) for i in range(self.n_shards)])
                for name, info in self._manifest.meta.items()
            }
        return self._meta

    @property
    def label_names(self) -> dict[str, list[str]]:
        """{label: names} for string labels: code ``i`` of ``meta[label]`` is ``names[i]``."""
        return {n: list(i["names"]) for n, i in self._manifest.meta.items() if "names" in i}

    def batches(
        self,
        hooks: str | list[str],
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        block_rows: int = 16,
        interleave: bool = False,
        start_batch: int = 0,
    ):
        """Stream float32 tensors ``[b, d]`` (a tuple of aligned tensors for a list of hooks).

        Shuffling is global and reproducible (same ``seed`` -> same order; pass the epoch as
        the seed): blocks of ``block_rows`` consecutive rows are permuted over the whole
        store (``block_rows=1``: every row independently; larger blocks read faster), and
        each batch is gathered from the memory maps (memory: the block permutation plus one
        batch). Inside a batch, rows are grouped by shard. Each rank gets a disjoint slice
        of the order; over all ranks every row appears exactly once per pass. With
        ``drop_last`` every rank gets ``len(store) // world_size`` rows (the remainder is
        dropped) and only full batches, so ranks stay in step. ``interleave=True`` instead
        splits every global batch of ``batch_size * world_size`` rows across the ranks, so a
        data-parallel run sees the same batches as one process with the global batch size.
        ``start_batch`` skips that many batches without reading them (to resume).
        """
        from hiddenlens.store.loader import iter_batches

        return iter_batches(
            self,
            hooks,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            drop_last=drop_last,
            block_rows=block_rows,
            interleave=interleave,
            start_batch=start_batch,
        )

    def to_hf_dataset(self, hooks: list[str] | None = None, *, include_meta: bool = True):
        """A ``datasets.Dataset`` with one column per hook (fixed-size float lists) and meta.

        Built in memory from the shards: use for stores that fit in RAM.
        """
        import datasets
        import pyarrow as pa

        hooks = self.hook_points if hooks is None else list(hooks)
        tables = []
        for shard in range(self.n_shards):
            columns = {}
            for h in hooks:
                info = self._info(h)
                arr = self.array(shard, info.file)
                arr = bf16_to_float32(arr) if info.dtype == "bfloat16" else np.asarray(arr)
                flat = pa.array(np.ascontiguousarray(arr).reshape(-1))
                columns[h] = pa.FixedSizeListArray.from_arrays(flat, info.d)
            if include_meta:
                for name, info in self._manifest.meta.items():
                    columns[name] = pa.array(np.asarray(self.array(shard, info["file"])))
            tables.append(pa.table(columns))
        return datasets.Dataset(datasets.table.InMemoryTable(pa.concat_tables(tables)))


def _all_shards(first: np.ndarray, n_shards: int) -> list[int]:
    """``first`` (distinct shard ids), then every other shard in storage order."""
    first = np.asarray(first, dtype=np.int64)
    rest = np.ones(n_shards, dtype=bool)
    rest[first] = False
    return np.concatenate([first, np.flatnonzero(rest)]).tolist()


def max_open_maps() -> int:
    """How many memory maps a store keeps open: half the soft limit on open files (>= 64)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 512
    return 1 << 20 if soft == resource.RLIM_INFINITY else max(64, soft // 2)


def bf16_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 numbers stored as uint16 bits (exact)."""
    writable = np.array(bits, dtype=np.uint16, copy=True)  # torch refuses read-only maps
    return torch.from_numpy(writable.view(np.int16)).view(torch.bfloat16).float().numpy()
