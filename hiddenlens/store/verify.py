"""Checksums off the reader's critical path: files verified by background threads ahead.

Every store file is listed in the manifest with its size, sha256 and (since this
version) an xxh3-128 digest, a non-cryptographic hash that runs at memory speed (~10x
sha256 here). Reading checks a file's size and xxh3 (sha256 for stores without xxh3)
before its rows are used; :meth:`ActivationStore.verify` checks every sha256. When a pass
over the store starts, :class:`AheadVerifier` checks the files it will read in shard order
on a few threads (hashing releases the GIL), so a first pass waits only for hashing the
reader has not already overtaken — the guarantee is unchanged: a corrupt file raises an
error naming it before any of its rows are returned.

Files are hashed through a read-only memory map, the same one the reader then slices: on
the development machine that is ~10x faster than hashing ``read()`` chunks (no copy out of
the page cache), and the pages it touches are already mapped when the rows are gathered.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np


def map_file(path: str | Path) -> mmap.mmap:
    """A read-only memory map of the whole file (an empty file is an error naming it)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise ValueError(f"corrupt store file {path}: it is empty")
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def buffer_digest(buf, kind: str) -> str:
    """Hex digest of a buffer: ``kind`` is ``"sha256"`` or ``"xxh3"`` (xxh3-128).

    Both hashlib and xxhash release the GIL while hashing, so threads hash in parallel.
    """
    if kind == "xxh3":
        import xxhash

        return xxhash.xxh3_128(buf).hexdigest()
    return hashlib.sha256(buf).hexdigest()


def file_digest(path: str | Path, kind: str) -> str:
    """Hex digest of a file (hashed through a temporary memory map)."""
    mm = map_file(path)
    try:
        return buffer_digest(mm, kind)
    finally:
        mm.close()


# numpy parses a .npy header with ast.literal_eval, and CPython 3.11's parser is not safe
# to run on several threads at once ("AST constructor recursion depth mismatch", seen with
# concurrent ranks and the background verifier): headers are parsed one at a time.
_HEADER_LOCK = threading.Lock()


def npy_array(mm: mmap.mmap, path: str | Path) -> np.ndarray:
    """The array of the ``.npy`` file mapped in ``mm``: a read-only view of the map, no copy.

    The header is parsed as ``np.load`` does; object dtypes (pickles) and a header that
    promises more bytes than the file holds are errors naming the file.
    """
    fmt = np.lib.format
    with open(path, "rb") as fh:
        try:
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            with _HEADER_LOCK:
                shape, fortran, dtype = read(fh)
        except (ValueError, OSError, SyntaxError) as err:
            raise ValueError(f"corrupt store file {path}: unreadable .npy header ({err})") from err
        offset = fh.tell()
    if dtype.hasobject:
        raise ValueError(f"corrupt store file {path}: object dtype {dtype} (a pickle) refused")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if need > len(mm):
        raise ValueError(f"corrupt store file {path}: its header promises {need} bytes, the "
                         f"file holds {len(mm)}")  # fmt: skip
    return np.ndarray(shape, dtype, buffer=mm, offset=offset, order="F" if fortran else "C")


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
