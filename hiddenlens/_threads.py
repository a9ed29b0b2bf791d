"""Thread limits for small numeric workloads, shared by every analyzer.

The probes' L-BFGS steps, SAE steps, critics, autoencoders, PCA fits, KDE blocks and batched toy networks here are so small
that intra-op threads only add synchronisation: on a busy 2-core machine a 64-unit MLP step
took 250 ms with two torch threads and 5 ms with one, and a 1,500 x 40 PCA 0.23 s with two
BLAS threads and 0.002 s with one. The previous settings are restored on exit.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def oversubscribed() -> bool:
    """Whether the 1-minute load average exceeds the number of cores."""
    try:
        return os.getloadavg()[0] > (os.cpu_count() or 1)
    except OSError:  # no load average on this platform
        return False


@contextlib.contextmanager
def torch_threads(n: int | None = 1, *, blas: bool = True) -> Iterator[None]:
    """Limit torch intra-op threads (and, with ``blas``, numpy's BLAS pools) to ``n``.

    ``n=None`` is automatic: 1 thread when the machine is oversubscribed (OpenMP threads
    then wait at every barrier for a descheduled sibling), else leave the settings alone.
    """
    import torch

    if n is None:
        n = 1 if oversubscribed() else None
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        if blas:
            with blas_threads(n):
                yield
        else:
            yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def blas_threads(n: int = 1) -> Iterator[None]:
    """Limit numpy's BLAS/OpenMP thread pools to ``n`` inside the block (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield
