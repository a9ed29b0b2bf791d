"""Atomic file writes: the one home for JSON, ``.npy`` and bytes written by hiddenlens.

Every file hiddenlens writes goes through here, so every file has the same guarantees:
written to a unique temporary name in the target directory, flushed and fsynced, then
``os.replace``d over the target (a reader sees the old file or the new one, never half of
one), and the directory entry fsynced so the rename survives a power cut. JSON is written
with one NaN policy everywhere: non-finite floats become ``null`` (a NaN shown as missing,
never as ``NaN``, which is not JSON, and never as zero); numpy/torch scalars and arrays
become plain numbers and lists, ``Path`` becomes a string.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Prefix of every temporary file; readers and cleaners skip names starting with it.
TMP_PREFIX = ".tmp-"


def json_safe(value: Any) -> Any:
    """Convert ``value`` to plain JSON types: NaN/inf -> None, numpy/torch -> Python."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return json_safe(value.tolist())
    return str(value)


def fsync_dir(path: str | Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read once: ``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], Any], *, fsync: bool = True) -> Path:
    """Call ``write(tmp_path)`` then move ``tmp_path`` over ``path`` atomically.

    ``write`` receives the path of a fresh temporary file in ``path``'s directory (so the
    final rename never crosses a filesystem). On any error, including KeyboardInterrupt,
    the temporary file is removed and the target is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.")
    os.close(fd)
    # mkstemp makes 0600 files; results are meant to be shared, so use the usual umask mode
    os.chmod(tmp, 0o666 & ~_umask())
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)
    return path


def write_bytes(path: str | Path, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), fsync=fsync)


def write_text(path: str | Path, text: str, *, fsync: bool = True) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"), fsync=fsync)


def dumps_json(obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> str:
    """``json.dumps`` with the one NaN policy (non-finite -> null); never emits ``NaN``."""
    return json.dumps(json_safe(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json(
    path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False,
    fsync: bool = True,
) -> Path:
    """Write ``obj`` as JSON atomically; NaN/inf become ``null``."""
    return write_text(path, dumps_json(obj, indent=indent, sort_keys=sort_keys), fsync=fsync)


def write_npy(path: str | Path, array: Any, *, fsync: bool = True) -> Path:
    """Write a numpy array (or anything ``np.asarray`` takes) as ``.npy`` atomically."""
    import numpy as np

    arr = np.asarray(array)

    def _write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)

    return atomic_write(path, _write, fsync=fsync)


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a decoding error names the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
