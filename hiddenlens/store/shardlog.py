"""The shard log: bookkeeping of an unfinished cache run that costs O(1) per shard.

While a run is unfinished its directory holds ``progress.json`` — the run's header (the
manifest without shards: run identity, hook and metadata layout), written when the run
starts and once more when the first batch fixes the layout — and ``shards.jsonl``, one
JSON line per completed shard, appended and fsynced after the shard directory is renamed
into place. A re-run reads both to resume; ``manifest.json`` is written once, at the end.
(Rewriting the whole manifest after every shard, as before, made the n-th shard cost O(n)
and a run O(n²).)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from hiddenlens import _io
from hiddenlens._io import json_safe
from hiddenlens.store.format import (
    PROGRESS,
    SHARD_LOG,
    Manifest,
    shard_name,
)

logger = logging.getLogger(__name__)


def write_progress_header(out: Path, manifest: Manifest) -> None:
    """Write ``progress.json``: the run's header, i.e. the manifest without its shards."""
    header = dict(manifest.to_dict(shards=False), shards=[], n_rows=0, complete=False)
    _io.write_json(out / PROGRESS, header, indent=1)


def append_shard_record(out: Path, record: dict[str, Any]) -> None:
    """Append one completed shard's record to the shard log as one fsynced JSON line.

    Costs the same at shard 10 and shard 100,000 (the manifest is written once, at the end).
    """
    line = json.dumps(json_safe(record), allow_nan=False, separators=(",", ":")) + "\n"
    with open(out / SHARD_LOG, "ab") as fh:
        fh.write(line.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_shard_log(out: Path) -> list[dict[str, Any]]:
    """The records of the shard log in order; a torn last line is cut off the file.

    Every append is fsynced, so only the last line can be incomplete (a crash or power cut
    mid-append): it is dropped, and its shard directory, now unrecorded, is redone. An
    unreadable line before the last one, or records out of order, mean a corrupt log.
    """
    path = out / SHARD_LOG
    if not path.exists():
        return []
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]  # up to the last line end
    lines = complete.split(b"\n")[:-1]
    records: list[dict[str, Any]] = []
    good = 0  # bytes of the file holding readable records
    for i, line in enumerate(lines):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            if i < len(lines) - 1 or len(complete) < len(data):
                raise ValueError(
                    f"corrupt shard log {path}: line {i + 1} is unreadable ({err})"
                ) from err
            break  # an unreadable last line: torn like a line without its end
        _check_record(path, i, rec, records)
        records.append(rec)
        good += len(line) + 1
    if good < len(data):
        logger.warning("dropping the torn last line of %s; that shard is redone", path)
        with open(path, "r+b") as fh:
            fh.truncate(good)
            fh.flush()
            os.fsync(fh.fileno())
    return records


def _check_record(path: Path, i: int, rec: dict[str, Any], before: list[dict[str, Any]]) -> None:
    expected_start = before[-1]["row_start"] + before[-1]["rows"] if before else 0
    if rec.get("name") != shard_name(i) or rec.get("row_start") != expected_start:
        raise ValueError(
            f"corrupt shard log {path}: line {i + 1} records {rec.get('name')!r} at row "
            f"{rec.get('row_start')!r}, expected {shard_name(i)!r} at row {expected_start}"
        )


def load_progress(out: Path) -> Manifest:
    """The state of an unfinished run: ``progress.json``'s header plus the shard log.

    (A ``progress.json`` from before the shard log, which lists its shards itself, is read
    as it is.)
    """
    state = Manifest.load(out / PROGRESS)
    records = read_shard_log(out)
    if records or (out / SHARD_LOG).exists() or not state.shards:
        state.shards = records
        state.n_rows = sum(r["rows"] for r in records)
        if records:
            state.sample_stop = records[-1]["sample_stop"]
    return state
