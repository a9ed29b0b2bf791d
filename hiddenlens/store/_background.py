"""A single background worker fed through a bounded queue; its errors surface in the caller.

The bounded queue is what keeps memory flat: the producer (the model) blocks when the
writer falls ``maxsize`` batches behind instead of piling batches up in RAM.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_DONE = object()


class Background:
    """Run ``fn(item)`` for each ``put`` item in one daemon thread, in order."""

    def __init__(self, fn: Callable[[Any], None], maxsize: int = 4, name: str = "worker"):
        self._fn = fn
        self._queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            try:
                self._fn(item)
            except BaseException as err:  # handed to the producer on its next put/close
                self._error = err
                return

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: Any) -> None:
        """Queue ``item``; blocks while the queue is full; raises the worker's error."""
        while True:
            self._raise_if_failed()
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._raise_if_failed()
                    raise RuntimeError("background writer stopped unexpectedly") from None

    def close(self) -> None:
        """Wait until every queued item is processed; re-raise the worker's error."""
        self.put(_DONE)
        self._thread.join()
        self._raise_if_failed()

    def abort(self, timeout: float = 60.0) -> None:
        """Drop queued items and stop after the item in progress (used on Ctrl-C/errors)."""
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        try:
            self._queue.put_nowait(_DONE)
        except queue.Full:
            pass
        self._thread.join(timeout)
