"""Small C kernels, compiled with the system C compiler at first use and called by ctypes.

Eager PyTorch has no fused kernel for some inner loops (the TopK SAE's per-row top-k is the
one that matters: ``torch.topk`` costs ~6x a one-pass C selection on a 6,144-wide row). A
kernel here is one self-contained C file shipped in the package, with no Python or torch
headers, so it builds in well under a second. Each process compiles its own copy into a
fresh private temporary directory, loads it and deletes the directory: nothing is cached
on disk, so nothing a later process loads could have been put there by someone else, and
``-march=native`` is safe (the library only runs where it was built).

When no compiler works (or ``HIDDENLENS_NATIVE=0``), :func:`load` returns None once, with a
logged warning, and callers take their eager PyTorch path; both give the same results.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

#: compiler flags, tried in order. The kernels' vector code is only worth it with the
#: machine's own vector width, so a compiler that rejects -march=native gets the PyTorch
#: path. -fopenmp makes the library bind to the OpenMP runtime torch has already loaded
#: (same soname), so kernels share torch's thread pool: threads of our own would compete
#: with torch's spinning OpenMP workers (measured 1.5x slower at 2 threads). Without
#: OpenMP the kernels run on one thread.
_FLAG_SETS = (
    ["-O3", "-march=native", "-std=gnu11", "-fopenmp", "-shared", "-fPIC"],
    ["-O3", "-march=native", "-std=gnu11", "-shared", "-fPIC"],
)


def enabled() -> bool:
    """Whether native kernels may be used (``HIDDENLENS_NATIVE=0`` turns them off)."""
    return os.environ.get("HIDDENLENS_NATIVE", "1").strip().lower() not in ("0", "false", "no")


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _build(cc: str, flags: list[str], source: Path, lib: Path) -> str:
    """Compile; '' on success, else why not."""
    cmd = [cc, *flags, "-o", str(lib), str(source)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as err:
        return str(err) or type(err).__name__
    return done.stderr.strip()[-500:] or "failed" if done.returncode else ""


@functools.cache
def load(source: Path) -> ctypes.CDLL | None:
    """The shared library built from the C file ``source``, or None (logged once) when it
    cannot be built here or native kernels are off."""
    if not enabled():
        return None
    cc = _compiler()
    if cc is None:
        logger.warning("no C compiler found; %s: its caller runs its PyTorch path", source.name)
        return None
    tmp = tempfile.mkdtemp(prefix="hiddenlens-native-")  # mode 0700: ours alone
    try:
        lib = Path(tmp) / f"{source.stem}.so"
        for flags in _FLAG_SETS:
            why = _build(cc, flags, source, lib)
            if not why:
                try:
                    return ctypes.CDLL(str(lib))  # the mapping outlives the deleted file
                except OSError as err:  # e.g. a temp dir mounted noexec
                    why = f"built but could not be loaded: {err}"
                    break
        logger.warning("could not build %s (%s); its caller runs its PyTorch path", source, why)
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
