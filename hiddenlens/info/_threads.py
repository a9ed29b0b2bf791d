"""Run small numeric workloads single-threaded.

The critics, autoencoders, PCA fits, KDE blocks and batched toy networks here are so small
that intra-op threads only add synchronisation: on a busy 2-core machine a 64-unit MLP step
took 250 ms with two torch threads and 5 ms with one, and a 1,500 x 40 PCA 0.23 s with two
BLAS threads and 0.002 s with one. The previous settings are restored on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    """Limit torch intra-op threads (and BLAS/OpenMP pools) to ``n`` inside the block."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with blas_threads(n):
            yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def blas_threads(n: int = 1) -> Iterator[None]:
    """Limit numpy's BLAS/OpenMP thread pools to ``n`` inside the block (threadpoolctl)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n):
        yield
