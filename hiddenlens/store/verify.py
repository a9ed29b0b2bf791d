"""Checksums off the reader's critical path: files verified by background threads ahead.

Every store file is listed in the manifest with its size, sha256 and (since this
version) an xxh3-128 digest, a non-cryptographic hash that runs at memory speed (~10x
sha256 here). Reading checks a file's size and xxh3 (sha256 for stores without xxh3)
before its rows are used; :meth:`ActivationStore.verify` checks every sha256. When a pass
over the store starts, :class:`AheadVerifier` checks the files on a few threads (hashing
releases the GIL) in the order the pass first reads them; a reader that needs a file no
thread has started checks it itself instead of waiting, and copies the rows of the files
already checked while the others finish. The guarantee is unchanged: a corrupt file
raises an error naming it before any of its rows are returned. What it cannot hide: a
batch of a global block shuffle reads from many shards (every shard, in a small store), so
the first batch waits until all of those files are hashed; the first pass costs the
hashing divided by the cores free for it.

Files are hashed through a read-only memory map, the same one the reader then slices: on
the development machine that is ~10x faster than hashing ``read()`` chunks (no copy out of
the page cache), and the pages it touches are already mapped when the rows are gathered.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import re
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


# The header numpy itself writes (format 1.0, a plain dtype): read with one regex, which
# costs ~1/20 of literal_eval; anything else goes through numpy's own parser.
_PLAIN_HEADER = re.compile(
    rb"\{'descr': '([<>|=]?[a-zA-Z]\d*)', 'fortran_order': (True|False), "
    rb"'shape': \(((?:\d+, )*\d*,?)\), \} *\n"
)


def _plain_header(mm: mmap.mmap):
    """(shape, fortran, dtype, data offset) of a numpy-written 1.0 header, else None."""
    if mm[:8] != b"\x93NUMPY\x01\x00":
        return None
    end = 10 + int.from_bytes(mm[8:10], "little")
    found = _PLAIN_HEADER.fullmatch(mm[10:end])
    if found is None:
        return None
    shape = tuple(int(x) for x in found.group(3).split(b",") if x.strip())
    return shape, found.group(2) == b"True", np.dtype(found.group(1).decode()), end


def _parsed_header(path: str | Path):
    """(shape, fortran, dtype, data offset) as ``np.load`` parses the header."""
    fmt = np.lib.format
    with open(path, "rb") as fh:
        try:
            version = fmt.read_magic(fh)
            read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            with _HEADER_LOCK:
                shape, fortran, dtype = read(fh)
        except (ValueError, OSError, SyntaxError) as err:
            raise ValueError(f"corrupt store file {path}: unreadable .npy header ({err})") from err
        return shape, fortran, dtype, fh.tell()


def load_npy(path: str | Path) -> np.ndarray:
    """``np.load`` of a small ``.npy`` file (no pickles), its header parsed under the lock."""
    with _HEADER_LOCK:
        return np.load(path, allow_pickle=False)


def npy_array(mm: mmap.mmap, path: str | Path) -> np.ndarray:
    """The array of the ``.npy`` file mapped in ``mm``: a read-only view of the map, no copy.

    The header is parsed as ``np.load`` does; object dtypes (pickles) and a header that
    promises more bytes than the file holds are errors naming the file.
    """
    shape, fortran, dtype, offset = _plain_header(mm) or _parsed_header(path)
    if dtype.hasobject:
        raise ValueError(f"corrupt store file {path}: object dtype {dtype} (a pickle) refused")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if need > len(mm):
        raise ValueError(f"corrupt store file {path}: its header promises {need} bytes, the "
                         f"file holds {len(mm)}")  # fmt: skip
    return np.ndarray(shape, dtype, buffer=mm, offset=offset, order="F" if fortran else "C")


class AheadVerifier:
    """Check ``keys`` with ``check(key)`` on background threads, in order; waiters help.

    ``wait(key)`` returns True once that key is checked (re-raising the error its check
    raised): a key no thread has started yet is checked on the caller's own thread, so a
    reader never idles while a file it needs is still queued; a key another thread is
    checking is waited for. It returns False at once when the key is not one of this
    verifier's (the caller checks it inline). ``busy(key)``: another thread is checking it.
    ``extend(keys)``: a later pass's keys, checked first, by the same threads.
    """

    def __init__(self, keys: list, check: Callable, threads: int | None = None):
        self._queue: deque = deque()
        self._wanted: set = set()
        self._started: set = set()  # keys some thread (a worker or a waiter) has taken
        self._done: dict = {}  # key -> None or the exception its check raised
        self._check = check
        self._cond = threading.Condition()
        self._threads = threads or min(4, os.cpu_count() or 1)
        self._live = 0  # worker threads running
        self.extend(keys)

    def extend(self, keys: list) -> None:
        """Check ``keys`` too, ahead of those still queued (the pass asking needs them first).

        One verifier serves every pass of a store: a second verifier would hash again the
        files the first is still checking (a pass abandoned after one batch, ``meta``).
        """
        with self._cond:
            for key in keys:
                if key not in self._wanted:  # new, or checked and reported: check it again
                    self._started.discard(key)
                    self._done.pop(key, None)
            self._wanted.update(keys)
            self._queue.extendleft(reversed(keys))
            start = max(0, min(self._threads, len(self._queue)) - self._live)
            self._live += start
        for i in range(start):
            threading.Thread(target=self._work, name=f"hiddenlens-verify-{i}", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while self._queue and self._queue[0] in self._started:
                    self._queue.popleft()  # taken by a waiter: skip it
                if not self._queue:
                    self._live -= 1  # under the lock: an extend now starts a new thread
                    return
                key = self._queue.popleft()
                self._started.add(key)
            try:
                self._run(key)
            except BaseException:
                with self._cond:
                    self._live -= 1
                raise

    def _run(self, key) -> None:
        """Check ``key`` (taken by this thread) and publish the outcome to every waiter."""
        try:
            self._check(key)
            error = None
        except (OSError, ValueError) as err:
            error = err
        except BaseException:  # interrupted (Ctrl-C on a waiter): give the key back
            with self._cond:
                self._started.discard(key)
                self._cond.notify_all()
            raise
        with self._cond:
            self._done[key] = error
            self._cond.notify_all()

    def busy(self, key) -> bool:
        with self._cond:
            return key in self._started and key not in self._done

    def wait(self, key) -> bool:
        with self._cond:
            if key not in self._wanted:
                return False
        while True:
            with self._cond:
                if key in self._done:
                    error = self._done[key]
                    self._wanted.discard(key)  # reported: asked again, the caller checks it
                    break
                if key in self._started:  # another thread is checking it
                    self._cond.wait()
                    continue
                self._started.add(key)  # queued, not started: check it here
            self._run(key)
        if error is not None:
            raise error
        return True
