"""Checksums off the reader's critical path: files verified by background threads ahead.

Every store file is listed in the manifest with its size, sha256 and (since this
version) an xxh3-128 digest, a non-cryptographic hash that runs at memory speed (~10x
sha256 here). Reading checks a file's size and xxh3 (sha256 for stores without xxh3)
before its rows are used; :meth:`ActivationStore.verify` checks every sha256. When a pass
over the store starts, :class:`AheadVerifier` checks the files it will read in shard order
on a few threads (hashing releases the GIL), so a first pass waits only for hashing the
reader has not already overtaken — the guarantee is unchanged: a corrupt file raises an
error naming it before any of its rows are returned.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 22  # 4 MiB reads: hashlib and xxhash release the GIL on large buffers


def file_digest(path: str | Path, kind: str) -> str:
    """Hex digest of a file: ``kind`` is ``"sha256"`` or ``"xxh3"`` (xxh3-128)."""
    if kind == "xxh3":
        import xxhash

        digest = xxhash.xxh3_128()
    else:
        digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


class AheadVerifier:
    """Check ``keys`` with ``check(key)`` on background threads, in order.

    ``wait(key)`` blocks until that key is checked (re-raising its error) and returns
    True, or returns False at once when the key is not one of this verifier's (the caller
    checks it inline).
    """

    def __init__(self, keys: list, check: Callable, threads: int | None = None):
        self._queue = deque(keys)
        self._wanted = set(keys)
        self._done: dict = {}  # key -> None or the exception its check raised
        self._check = check
        self._cond = threading.Condition()
        n = threads or min(4, os.cpu_count() or 1)
        for i in range(max(1, min(n, len(keys)))):
            threading.Thread(target=self._work, name=f"hiddenlens-verify-{i}", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._cond:
                if not self._queue:
                    return
                key = self._queue.popleft()
            try:
                self._check(key)
                error = None
            except (OSError, ValueError) as err:
                error = err
            with self._cond:
                self._done[key] = error
                self._cond.notify_all()

    def wait(self, key) -> bool:
        if key not in self._wanted:
            return False
        with self._cond:
            while key not in self._done:
                self._cond.wait()
            error = self._done.pop(key)
            self._wanted.discard(key)
        if error is not None:
            raise error
        return True
