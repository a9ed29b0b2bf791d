"""The writer lock: one writing process per store directory.

``cache_activations`` holds ``OUT/writer.lock`` (JSON: pid, host, start time) from before it
touches the directory until it returns. A second writer fails at once with a message
naming the owner, instead of deleting the first one's in-flight shard. A lock left by a
process that died (same host, pid no longer running) is stale and taken over; a lock from
another host cannot be checked and is reported, with how to remove it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hiddenlens import _io

logger = logging.getLogger(__name__)

LOCK = "writer.lock"


class StoreLockedError(RuntimeError):
    """Another live process is writing this store."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _owner(path: Path) -> dict | None:
    try:
        owner = json.loads(path.read_text(encoding="utf-8"))
        return owner if isinstance(owner, dict) else None
    except (OSError, ValueError):
        return None


def _try_create(path: Path) -> bool:
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:  # O_EXCL: created, not renamed, once
        fh.write(_io.dumps_json(me, indent=None))
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _is_stale(owner: dict | None) -> bool:
    """A lock whose owner is known dead: same host, pid not running (or unreadable lock)."""
    if owner is None:
        return True  # torn or empty: its writer died while creating it
    if owner.get("host") != socket.gethostname():
        return False
    pid = owner.get("pid")
    return not (isinstance(pid, int) and pid > 0 and _alive(pid))


@contextmanager
def writer_lock(out: Path) -> Iterator[None]:
    """Hold ``out/writer.lock`` for the block; raise :class:`StoreLockedError` if taken."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output path {out} exists and is not a directory")
    path = out / LOCK
    for _ in range(3):  # a stale lock is removed and creation retried
        try:
            out.mkdir(parents=True, exist_ok=True)
            if _try_create(path):
                break
        except OSError as err:
            raise OSError(f"cannot write the activation store to {out}: {err}") from err
        owner = _owner(path)
        if not _is_stale(owner):
            raise StoreLockedError(
                f"{out} is being written by another process (pid {owner.get('pid')} on host "
                f"{owner.get('host')!r}, lock {path}); wait for it to finish, or delete the "
                "lock file if that process is gone"
            )
        logger.warning("removing the stale writer lock %s (owner %s is gone)", path, owner)
        path.unlink(missing_ok=True)
    else:
        raise StoreLockedError(f"could not take the writer lock {path}")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
