"""Run tiny torch workloads single-threaded.

The critics, autoencoders and batched toy networks here are so small that intra-op threads
only add synchronisation: on a busy 2-core machine a 64-unit MLP step took 250 ms with two
threads and 5 ms with one. The previous setting is restored on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
