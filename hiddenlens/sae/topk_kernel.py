"""Per-row top-k for TopK-family SAE training on the CPU, by the C kernel ``kernels/topk.c``.

The k largest entries of every row of a float32 pre-activation tile, exactly (the same set
as ``torch.topk`` up to ties, NaN counted largest as there), in one pass over the row: group
maxima, a threshold that at least k group maxima reach, then a selection among the few
entries of those groups that reach it (see the C file). On a 1,024 x 6,144 tile it takes
~4 ms against ~24 ms for ``torch.topk`` and ~11 ms for the eager group filter in
``architectures.topk`` (one thread, this repository's 2-core benchmark machine).

Rows are shared among torch's own OpenMP threads (see :mod:`hiddenlens._native`), so the
kernel follows ``torch.set_num_threads`` like the rest of the step.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch import Tensor

from hiddenlens import _native

_SOURCE = Path(__file__).with_name("kernels") / "topk.c"
#: entries per group in the C kernel (its ``G``) and per run of groups (``8 G``)
GROUP, RUN = 32, 256


@functools.cache
def _kernel():
    lib = _native.load(_SOURCE)
    if lib is None:
        return None
    fn = lib.hl_topk_rows_f32
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    fn.argtypes = [ptr, i64, i64, ptr, i64, i64, i64, ptr, ptr]
    fn.restype = ctypes.c_int
    return fn


def n_groups(n: int) -> int:
    """Groups the kernel splits an n-wide row into (it needs k <= this)."""
    return 8 * (n // RUN) + (n % RUN != 0)


def available(score: Tensor, k: int) -> bool:
    """Whether :func:`topk_rows` takes ``score`` [c, n] with this k."""
    return (
        score.dim() == 2
        and score.device.type == "cpu"
        and score.dtype == torch.float32
        and score.stride(1) == 1
        and 1 <= k <= n_groups(score.shape[1])
        and _kernel() is not None
    )


def topk_rows(score: Tensor, k: int, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(values [c, k], column indices [c, k] int64) of the k largest of each row of
    ``score + bias``, unordered; ``bias`` [n] is added on the fly (the encoder matmul then
    needs no pass of its own to add it). Check :func:`available` first; raises ValueError
    for an input the kernel cannot take."""
    if bias is None:
        bias = score.new_zeros(score.shape[-1])
    if not available(score, k):
        raise ValueError(
            f"the C top-k takes a CPU float32 [rows, n] tensor with unit column stride and "
            f"1 <= k <= {n_groups(score.shape[-1]) if score.dim() else 0}, and a compiled "
            f"kernel; got {score.dtype} {tuple(score.shape)} on {score.device}, k={k}"
        )
    if bias.shape != score.shape[1:] or bias.dtype != score.dtype or not bias.is_contiguous():
        raise ValueError(
            f"bias must be a contiguous {score.dtype} tensor of shape {tuple(score.shape[1:])}, "
            f"got {bias.dtype} {tuple(bias.shape)}"
        )
    bias = bias.cpu()
    c, n = score.shape
    val = score.new_empty(c, k)
    idx = torch.empty(c, k, dtype=torch.long)
    code = _kernel()(score.data_ptr(), score.stride(0), n, bias.data_ptr(), k, 0, c,
                     val.data_ptr(), idx.data_ptr())  # fmt: skip
    if code:
        raise MemoryError(f"the top-k kernel could not allocate its {3 * n}-entry scratch")
    return val, idx
