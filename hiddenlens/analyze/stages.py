"""Resumable stages: a stage's output directory holds ``stage.json`` with the fingerprint of
what produced it; a stage whose marker matches is skipped, one whose marker differs is
redone from scratch, and the marker is written last (after the output), so an interrupted
stage is never taken for a finished one."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from hiddenlens._io import read_json, write_json

logger = logging.getLogger(__name__)
MARKER = "stage.json"


def fingerprint(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj`` (dict keys sorted)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def is_done(directory: Path, fp: str) -> bool:
    marker = directory / MARKER
    if not marker.exists():
        return False
    try:
        saved = read_json(marker)
    except (ValueError, OSError):
        return False
    return saved.get("fingerprint") == fp and saved.get("complete") is True


def begin(directory: Path, fp: str, *, keep_partial: bool = True) -> None:
    """Prepare ``directory`` for a (re)run: a different run's output is removed first;
    an interrupted run of the same fingerprint is kept when ``keep_partial`` (it resumes)."""
    marker = directory / MARKER
    if directory.exists():
        saved = None
        if marker.exists():
            try:
                saved = read_json(marker)
            except (ValueError, OSError):
                saved = None
        same = saved is not None and saved.get("fingerprint") == fp
        if not (same and keep_partial):
            logger.info("%s holds another run's output; redoing it", directory)
            shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(marker, {"fingerprint": fp, "complete": False})


def finish(directory: Path, fp: str, **info: Any) -> None:
    write_json(directory / MARKER, {"fingerprint": fp, "complete": True, **info})


def info(directory: Path) -> dict[str, Any]:
    return read_json(directory / MARKER)
