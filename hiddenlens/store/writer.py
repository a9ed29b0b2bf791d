"""Cache a model's activations to a resumable, checksummed on-disk store.

The model runs in the calling thread; a background thread converts, checks, summarises and
writes rows (so disk I/O overlaps the forward passes, the pattern of SAELens' and
sparsify's activation buffers). Shards end on batch boundaries and are renamed into place
when complete; a line appended to the shard log (``shards.jsonl``, fsynced) then records
each one, so a re-run of the same call after Ctrl-C or ``kill -9`` continues from the first
sample of the first incomplete shard: no row is lost and none is duplicated. The per-shard
bookkeeping is that one line, whatever the shard count; ``manifest.json`` is written once,
last.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hiddenlens import _io
from hiddenlens.store import format as fmt
from hiddenlens.store import shardlog
from hiddenlens.store._background import Background
from hiddenlens.store.lock import LOCK, writer_lock
from hiddenlens.store.reader import ActivationStore
from hiddenlens.store.shards import ShardWriter

logger = logging.getLogger(__name__)


def cache_activations(
    model: Any,
    data: Any,
    hook_points: str | list[str],
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 32,
    max_rows: int | None = None,
    seq_len: int | None = None,
    dtype: str = "float32",
    labels: Any = None,
    overwrite: bool = False,
    grads: bool = False,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    text_column: str = "text",
    shard_size_mb: float = 128.0,
    allow_nonfinite: bool = False,
    progress: bool = False,
    queue_size: int = 4,
    first_sample: int = 0,
    rows: str | None = None,
) -> ActivationStore:
    """Run ``model`` over ``data`` and store the activations at ``hook_points`` in ``out_dir``.

    Rows are ``[n_rows, d]`` per hook: one per kept token for text (padding and special
    tokens dropped) and token ids (padding dropped), one per example otherwise, or one per
    spatial position of a conv map with ``rows="position"``. With ``grads=True`` the gradient of
    ``loss_fn(model_output, batch)`` at each hook is stored as ``"<hook>#grad"``.

    Args:
        model: ``"minilm"``, a Hugging Face path/id, a HookedTransformer, an ``nn.Module``
            or a ``ModelHandle``.
        data: anything :func:`hiddenlens.data.as_data` accepts (a list of strings,
            ``"demo"``, a .txt/.jsonl path, a saved HF dataset directory, a
            ``datasets.Dataset``/``IterableDataset``, token ids, a tensor/array of examples,
            a DataLoader / map-style dataset yielding ``x`` or ``(x, y)``) or a
            ``DataSource``. Its content is hashed per shard, so a resume over changed data
            is refused.
        hook_points: names or fnmatch globs (see ``hiddenlens.hook_points``).
        out_dir: the store directory. An unfinished run of the same call resumes and a
            finished one is reopened; a different run in a non-empty directory is refused.
        overwrite: delete the store in ``out_dir`` first (never a directory holding files
            a store run did not write).
        max_rows: stop after exactly this many rows.
        dtype: ``"float32"``, ``"float16"`` or ``"bfloat16"`` (stored as uint16 bits).
        labels: one value per sample (numbers or strings), ``{name: values}`` or column
            name(s) of ``data``; broadcast to the sample's rows. Strings are stored as int
            codes, their names in the manifest (``store.label_names``).
        shard_size_mb: approximate shard size; memory use grows by about one shard.
        allow_nonfinite: store NaN/inf instead of raising.
        progress: show a tqdm progress bar (samples, rows/s).
        first_sample: skip the samples before this one (``sample_idx`` stays global); used
            to split data across processes (``hiddenlens.store.distributed``).
        rows: ``"token"`` (default for text and token ids), ``"example"`` (default
            otherwise) or ``"position"`` (``[B, C, H, W]`` -> ``B*H*W`` rows of ``C``; the
            per-example shape is kept in the manifest, the flat position in meta).

    Returns:
        The finished :class:`ActivationStore`.
    """
    _validate(batch_size, max_rows, dtype, shard_size_mb, queue_size, first_sample)
    from hiddenlens.data import as_data
    from hiddenlens.hooks import load_model, resolve_hook_points
    from hiddenlens.hooks.rows import RowSettings, rows_of_batches

    source = as_data(data, text_column=text_column, labels=labels)
    row_settings = RowSettings(rows=rows, seq_len=seq_len, grads=grads, loss_fn=loss_fn)
    handle = load_model(model)
    hooks = resolve_hook_points(handle, hook_points)
    settings = dict(
        batch_size=batch_size,
        seq_len=seq_len,
        max_rows=max_rows,
        dtype=dtype,
        grads=grads,
        loss_fn=_qualname(loss_fn),
        text_column=text_column,
        shard_size_mb=shard_size_mb,
        first_sample=first_sample,
        rows=row_settings.mode_for(handle, source),  # refuses misfits before any file
    )
    run = _run_identity(handle, source, hooks, settings)
    out = Path(out_dir).expanduser()
    with writer_lock(out):  # one writer per directory, from before anything is deleted
        state = _prepare_dir(out, run, overwrite)
        if state.complete:
            _check_data(source, batch_size, first_sample, state.shards, out, finished=True)
            logger.info("%s already holds this finished run; opening it", out)
            return ActivationStore.open(out)
        if not state.shards:  # a fresh run (or one interrupted before its first shard)
            state.sample_stop = max(state.sample_stop, first_sample)
        rest = _check_data(source, batch_size, first_sample, state.shards, out, finished=False)
        writer = ShardWriter(out, state, dtype, int(shard_size_mb * 2**20), allow_nonfinite)
        row_batches = rows_of_batches(handle, hooks, source, rest, row_settings)
        try:
            _run_batches(row_batches, writer, max_rows, source.length, progress, queue_size)
        except BaseException:
            if not writer.manifest.shards:  # failed before its first shard (rows= misfit)
                _discard_unstarted(out)
            raise
        if writer.manifest.n_rows == 0:
            _discard_unstarted(out)
            raise ValueError("data produced no rows (every sample was empty after tokenisation)")
        return _finalize(out, writer)


def _validate(batch_size, max_rows, dtype, shard_size_mb, queue_size, first_sample) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
        raise ValueError(f"max_rows must be None or a positive int, got {max_rows!r}")
    if dtype not in fmt.DTYPES:
        raise ValueError(f"dtype must be one of {fmt.DTYPES}, got {dtype!r}")
    if not shard_size_mb > 0:
        raise ValueError(f"shard_size_mb must be > 0, got {shard_size_mb!r}")
    if not isinstance(queue_size, int) or queue_size < 1:
        raise ValueError(f"queue_size must be a positive int, got {queue_size!r}")
    if not isinstance(first_sample, int) or first_sample < 0:
        raise ValueError(f"first_sample must be a non-negative int, got {first_sample!r}")


def _qualname(fn: Any) -> str | None:
    if fn is None:
        return None
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', type(fn).__name__)}"


def _run_identity(handle, source, hooks, settings) -> dict[str, Any]:
    from hiddenlens.hooks.rows import handle_fingerprint

    tok = handle.tokenizer
    if tok is not None:
        settings["tokenizer"] = {
            "name": getattr(tok, "name_or_path", type(tok).__name__),
            "model_max_length": handle.max_length,
            "drop_special_tokens": True,
        }
    run = {
        "model": handle_fingerprint(handle),
        "hooks": list(hooks),
        "data": source.identity(),  # its content: one hash per shard (_check_data)
        "settings": settings,
    }
    return json.loads(json.dumps(run))  # the form it has after a JSON round trip


def _discard_unstarted(out: Path) -> None:
    """Remove what a run that wrote no shard left (so a corrected call is not refused as
    "a different run"): the directory if it holds only store files, else its run state."""
    if not out.is_dir():
        return
    if _only_store_files(out):
        shutil.rmtree(out, ignore_errors=True)
    else:
        for name in (fmt.PROGRESS, fmt.SHARD_LOG):
            (out / name).unlink(missing_ok=True)


def _only_store_files(out: Path) -> bool:
    """True when every entry of ``out`` is something a store run writes (safe to delete)."""
    known = (fmt.MANIFEST, fmt.TABLE, fmt.PROGRESS, fmt.SHARD_LOG, LOCK)
    return all(
        p.name in known or p.name.startswith((fmt.SHARD_PREFIX, fmt.TMP_PREFIX))
        for p in out.iterdir()
    )


def _describe_difference(old: dict, new: dict) -> str:
    keys = [k for k in new if old.get(k) != new.get(k)]
    if "settings" in keys:
        s_old, s_new = old.get("settings", {}), new["settings"]
        keys.remove("settings")
        keys += [f"settings.{k}" for k in s_new if s_old.get(k) != s_new.get(k)]
    return ", ".join(keys) or "format"


def _prepare_dir(out: Path, run: dict, overwrite: bool) -> fmt.Manifest:
    """The state to continue from (``complete`` when the finished store is already there)."""
    entries = [p for p in out.iterdir() if p.name != LOCK] if out.exists() else []
    previous = None
    for name in (fmt.MANIFEST, fmt.PROGRESS):
        if (out / name).exists():
            try:
                is_manifest = name == fmt.MANIFEST
                previous = (
                    fmt.Manifest.load(out / name) if is_manifest else shardlog.load_progress(out)
                )
            except (ValueError, TypeError, KeyError) as err:
                logger.warning("unreadable %s in %s (%s)", name, out, err)
            break
    if entries and (overwrite or previous is None or previous.run != run):
        if not overwrite:
            why = (
                "it is not a hiddenlens store"
                if previous is None
                else "it holds a different "
                f"run (differs in: {_describe_difference(previous.run, run)})"
            )
            raise FileExistsError(
                f"refusing to write to non-empty directory {out}: {why}; "
                "pass overwrite=True or choose another out_dir"
            )
        if not _only_store_files(out):
            raise FileExistsError(
                f"overwrite=True but {out} contains files that are not part "
                "of a hiddenlens store; refusing to delete them"
            )
        logger.info("overwrite=True: removing the store in %s", out)
        for p in entries:  # all but our own lock
            shutil.rmtree(p) if p.is_dir() else p.unlink()
        previous = None
    if previous is not None and previous.complete and (out / fmt.MANIFEST).exists():
        _drop_progress(out)  # left by a crash between writing the manifest and cleaning up
        return previous
    return _start_or_resume(out, run, previous)


def _start_or_resume(out: Path, run: dict, previous: fmt.Manifest | None) -> fmt.Manifest:
    try:
        out.mkdir(parents=True, exist_ok=True)
        recorded = {s["name"] for s in previous.shards} if previous else set()
        for p in out.iterdir():  # half-written shards, or shards renamed but never recorded
            if p.name.startswith(fmt.TMP_PREFIX) or (
                p.name.startswith(fmt.SHARD_PREFIX) and p.name not in recorded
            ):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        state = previous or fmt.Manifest(run=run, hooks={}, meta={}, n_rows=0, shards=[])
        if not (out / fmt.SHARD_LOG).exists():  # a fresh run, or a pre-shard-log progress.json
            for record in state.shards:
                shardlog.append_shard_record(out, record)
        shardlog.write_progress_header(out, state)
    except OSError as err:
        raise OSError(f"cannot write the activation store to {out}: {err}") from err
    if previous is not None:
        logger.info(
            "resuming %s after %d complete shards (%d rows, from sample %d)",
            out,
            len(previous.shards),
            previous.n_rows,
            previous.sample_stop,
        )
    return state


def _drop_progress(out: Path) -> None:
    """Remove the unfinished-run files once ``manifest.json`` is in place."""
    (out / fmt.PROGRESS).unlink(missing_ok=True)
    (out / fmt.SHARD_LOG).unlink(missing_ok=True)
    _io.fsync_dir(out)


def _check_data(source, batch_size: int, first: int, shards: list[dict], out: Path, finished: bool):
    """Re-hash the examples the recorded shards cover; return the batches after them.

    Each shard records the hash of the examples it was written from (``data_sha256``); a
    mismatch means the data changed since, so resuming (or reusing a finished store) would
    mix rows of two datasets: refused, naming the first differing shard.
    """
    from hiddenlens.data import ContentHash

    batches = source.batches(batch_size, first)
    lo = first
    for shard in shards:
        digest, begin, stop = ContentHash(), lo, shard["sample_stop"]
        while lo < stop:
            batch = next(batches, None)
            if batch is None or batch.start != lo or batch.stop > stop:
                break
            digest.update(batch.digests())
            lo = batch.stop
        if lo != stop or digest.hexdigest() != shard.get("data_sha256"):
            where = f"first in {shard['name']} (samples {begin}..{stop - 1})"
            if finished:
                why = f"it holds a different run (differs in: data, {where})"
                raise FileExistsError(
                    f"refusing to write to non-empty directory {out}: {why}; "
                    "pass overwrite=True or choose another out_dir"
                )
            raise FileExistsError(
                f"cannot resume the run in {out}: the data differs from what its shards were "
                f"written from, {where} (a shuffled DataLoader differs on every pass); pass "
                "overwrite=True or choose another out_dir"
            )
        lo = stop
    return batches


def _run_batches(row_batches, writer, max_rows, n_samples, progress, qsize):
    """Feed row batches to the background writer until the data or ``max_rows`` runs out."""
    state = writer.manifest
    rows, start = state.n_rows, state.sample_stop
    if max_rows is not None and rows >= max_rows:
        return
    bar = _progress_bar(progress, n_samples, start)
    background = Background(writer.add, maxsize=qsize, name="hiddenlens-store-writer")
    t0, rows0 = time.perf_counter(), rows
    try:
        for batch in row_batches:
            n = len(batch)
            if max_rows is not None and rows + n >= max_rows:
                background.put(batch.head(max_rows - rows))
                rows = max_rows
                break
            background.put(batch)
            rows += n
            if bar is not None:
                bar.update(batch.sample_stop - bar.n)
                bar.set_postfix_str(f"{(rows - rows0) / (time.perf_counter() - t0):,.0f} rows/s")
        background.close()
    except BaseException:
        # Ctrl-C or an error upstream: the queued batches are whole, so write them out (the
        # more shards are recorded, the less a re-run recomputes); if the writer itself
        # failed, drop them. Either way a re-run resumes after the last recorded shard.
        try:
            background.close()
        except BaseException:  # noqa: BLE001 - the original exception is what matters
            background.abort()
        raise
    finally:
        if bar is not None:
            bar.close()
    writer.flush()
    dt = time.perf_counter() - t0
    logger.info("cached %d rows in %.1f s (%.0f rows/s)", rows - rows0, dt, (rows - rows0) / dt)


def _progress_bar(progress: bool, total: int | None, initial: int):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="sample", desc="caching", dynamic_ncols=True)


def _finalize(out: Path, writer: ShardWriter) -> ActivationStore:
    """Merge per-shard statistics, write manifest.json atomically, drop progress.json."""
    manifest = writer.manifest
    for hook, info in manifest.hooks.items():
        info.stats = fmt.finalize_stats(manifest.n_rows, *writer.totals[hook])
    manifest.complete = True
    try:
        fmt.write_manifest(out / fmt.MANIFEST, manifest)
        _drop_progress(out)
    except OSError as err:
        (out / fmt.MANIFEST).unlink(missing_ok=True)
        raise OSError(f"cannot write {fmt.MANIFEST} to {out}: {err}") from err
    logger.info(
        "store complete: %s (%d rows, %d shards)", out, manifest.n_rows, len(manifest.shards)
    )
    return ActivationStore.open(out)
