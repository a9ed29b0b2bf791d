"""Accumulate row batches into shards and write each shard atomically (background thread).

Per-hook statistics are kept as mergeable float64 sums (count, sum, sum of squares, sum of
row norms) per shard, so a resumed run merges exactly what an uninterrupted one would.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiddenlens import _io
from hiddenlens.data import ContentHash
from hiddenlens.store import format as fmt
from hiddenlens.store import shardlog
from hiddenlens.store.verify import load_npy

logger = logging.getLogger(__name__)


def to_storage(t: torch.Tensor, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(array as stored, the same values as a float array for statistics)."""
    t = t.detach().cpu()
    if dtype == "bfloat16":
        tb = t.to(torch.bfloat16).contiguous()
        return tb.view(torch.int16).numpy().view(np.uint16), tb.to(torch.float32).numpy()
    arr = t.to(getattr(torch, dtype)).contiguous().numpy()
    return arr, arr


def row_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """float64 (sum [d], sum of squares [d], sum of row L2 norms) of ``values`` [n, d]."""
    x = values.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN are reported by the caller
        total = x.sum(axis=0)
        np.multiply(x, x, out=x)
        return total, x.sum(axis=0), float(np.sqrt(x.sum(axis=1)).sum())


def _float(value) -> float:
    return float("nan") if value is None else float(value)  # JSON null = NaN


class ShardWriter:
    """Buffers rows until a shard is ~``shard_bytes`` and writes it; logs it in the shard log.

    Runs in the background thread (``add``); ``flush`` writes the last partial shard.
    """

    def __init__(
        self, out: Path, manifest: fmt.Manifest, dtype: str, shard_bytes: int, allow_nonfinite: bool
    ):
        self.out, self.manifest, self.dtype = out, manifest, dtype
        self.shard_bytes, self.allow_nonfinite = shard_bytes, allow_nonfinite
        self.totals = {h: self._load_totals(h) for h in manifest.hooks}
        self._batches_seen = 0
        self._reset()

    def _reset(self) -> None:
        self._acts: dict[str, list[np.ndarray]] = {h: [] for h in self.manifest.hooks}
        self._meta: dict[str, list[np.ndarray]] = {m: [] for m in self.manifest.meta}
        self._stats = {h: [0.0, 0.0, 0.0] for h in self.manifest.hooks}
        self._data_hash = ContentHash()  # the examples this shard is written from
        self._rows = self._bytes = 0
        self._sample_stop = self.manifest.sample_stop

    def _load_totals(self, hook: str) -> list:
        """Merge the per-shard sums already on disk (when resuming)."""
        info, total = self.manifest.hooks[hook], [0.0, 0.0, 0.0]
        for shard in self.manifest.shards:
            sums = load_npy(self.out / shard["name"] / info.stats_file)
            total = [
                total[0] + sums[0],
                total[1] + sums[1],
                total[2] + _float(shard["sum_norm"][hook]),
            ]
        return total

    def _define_layout(self, batch) -> None:
        """Fix hook and metadata files from the first batch of a fresh run."""
        acts = list(batch.acts)
        files, stats = fmt.file_names(acts, "act"), fmt.file_names(acts, "stats")
        storage = fmt.STORAGE_DTYPE[self.dtype]
        self.manifest.hooks = {
            h: fmt.HookInfo(
                int(batch.acts[h].shape[1]),
                self.dtype,
                storage,
                files[h],
                stats[h],
                shape=batch.shapes.get(h),
            )
            for h in acts
        }
        for m, v in batch.meta.items():
            if np.asarray(v).dtype.kind not in "biuf":
                raise TypeError(
                    f"metadata {m!r} has dtype {np.asarray(v).dtype}; labels must "
                    "be numeric or bool (map strings to integer codes first)"
                )
        meta_files = fmt.file_names(batch.meta, "meta")
        self.manifest.meta = {
            m: {"dtype": np.asarray(v).dtype.str, "file": meta_files[m]}
            for m, v in batch.meta.items()
        }
        self.totals = {h: [0.0, 0.0, 0.0] for h in acts}
        self._reset()
        shardlog.write_progress_header(self.out, self.manifest)  # once: the layout is now fixed

    def _check_layout(self, batch) -> None:
        hooks = self.manifest.hooks
        if list(batch.acts) != list(hooks) or set(batch.meta) != set(self.manifest.meta):
            raise ValueError(
                f"batch has hooks {list(batch.acts)} and metadata {list(batch.meta)}"
                f"; the store expects {list(hooks)} and {list(self.manifest.meta)}"
            )
        for h, t in batch.acts.items():
            if t.ndim != 2 or t.shape[1] != hooks[h].d:
                raise ValueError(
                    f"hook {h!r} gave rows of shape {tuple(t.shape)}, expected [n, {hooks[h].d}]"
                )

    def add(self, batch) -> None:
        """Convert, check and buffer one RowBatch; write a shard when the buffer is full."""
        if not self.manifest.hooks:
            self._define_layout(batch)
        self._check_layout(batch)
        first, index = self._sample_stop, self._batches_seen
        self._batches_seen += 1
        for hook, t in batch.acts.items():
            stored, values = to_storage(t, self.dtype)
            total, total_sq, norms = row_stats(values)
            if not self.allow_nonfinite and not (
                np.isfinite(total).all() and np.isfinite(total_sq).all()
            ):
                bad = int((~np.isfinite(values)).sum())
                raise ValueError(
                    f"non-finite activations at hook {hook!r} in batch {index} of this run "
                    f"(samples {first}..{batch.sample_stop - 1}): {bad} NaN/inf values"
                    + (
                        f" after conversion to {self.dtype}"
                        if bad and self.dtype != "float32"
                        else ""
                    )
                    + "; pass allow_nonfinite=True to store them anyway"
                )
            acc = self._stats[hook]
            self._stats[hook] = [acc[0] + total, acc[1] + total_sq, acc[2] + norms]
            self._acts[hook].append(stored)
            self._bytes += stored.nbytes
        for name, info in self.manifest.meta.items():
            self._meta[name].append(np.asarray(batch.meta[name]).astype(info["dtype"], copy=False))
        for name, names in batch.label_names.items():
            self.manifest.meta[name]["names"] = list(names)
        self._data_hash.update(batch.data_digests)
        self._rows += len(batch)
        self._sample_stop = batch.sample_stop
        if self._bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as the next shard (tmp dir, then atomic rename)."""
        if self._rows == 0:
            return
        m = self.manifest
        name = fmt.shard_name(len(m.shards))
        tmp, final = self.out / f"{fmt.TMP_PREFIX}{name}", self.out / name
        try:
            files = self._write_files(tmp)
            os.replace(tmp, final)
            _io.fsync_dir(self.out)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise OSError(
                f"writing shard {name} to {self.out} failed ({err}); completed shards are "
                "kept and no manifest was written: fix the cause (disk full? permissions?) and "
                "re-run the same call to resume"
            ) from err
        record = self.shard_record(name, files)
        try:
            shardlog.append_shard_record(self.out, record)  # O(1): one fsynced line per shard
        except OSError as err:
            raise OSError(
                f"recording shard {name} in the shard log of {self.out} failed ({err}); no "
                "manifest was written: fix the cause (disk full? permissions?) and re-run the "
                "same call to resume (that shard is redone)"
            ) from err
        m.shards.append(record)
        m.n_rows += self._rows
        m.sample_stop = self._sample_stop
        for h, s in self._stats.items():
            t = self.totals[h]
            self.totals[h] = [t[0] + s[0], t[1] + s[1], t[2] + s[2]]
        logger.debug("wrote %s (%d rows)", name, self._rows)
        self._reset()

    def shard_record(self, name: str, files: dict[str, dict]) -> dict[str, Any]:
        """The shard's line in the shard log and its entry in the manifest's shard list.

        A plain dict: callers may add fields (they are kept in the log and the manifest).
        """
        return {
            "name": name,
            "rows": self._rows,
            "row_start": self.manifest.n_rows,
            "sample_stop": self._sample_stop,
            "data_sha256": self._data_hash.hexdigest(),
            "sum_norm": {h: s[2] for h, s in self._stats.items()},
            "files": files,
        }

    def _write_files(self, tmp: Path) -> dict[str, dict]:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        files = {}
        for hook, info in self.manifest.hooks.items():
            files[info.file] = fmt.write_npy(tmp / info.file, self._acts[hook], info.storage_dtype)
            sums = np.stack([np.broadcast_to(s, (info.d,)) for s in self._stats[hook][:2]])
            files[info.stats_file] = fmt.write_npy(tmp / info.stats_file, [sums], np.float64)
        for name, info in self.manifest.meta.items():
            files[info["file"]] = fmt.write_npy(tmp / info["file"], self._meta[name], info["dtype"])
        return files
