"""The sparse TopK backward's latent-grouped sums on the CPU, by the C kernel ``kernels/sparse.c``.

Both weight gradients of a TopK SAE group the active (row, latent) pairs by latent
(:mod:`hiddenlens.sae.sparse`). The kernel sorts the pairs by latent with a counting sort
(~6x ``torch.argsort``), reads each pair's weight and row through that order instead of
permuted copies, and can write the sums transposed, so ``dW_enc`` lands in ``W_enc``'s
[d_in, d_sae] layout without the transposing copy ``embedding_bag`` needs (on the benchmark
step, 4,096 x 32 pairs, d_in 384: ~12 ms against ~20 ms). Blocks of latents are shared
among torch's own OpenMP threads (see :mod:`hiddenlens._native`).
Where the kernel cannot be built, :func:`available` is False and callers use torch.
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path

import torch
from torch import Tensor

from hiddenlens import _native

_SOURCE = Path(__file__).with_name("kernels") / "sparse.c"


@functools.cache
def _lib():
    lib = _native.load(_SOURCE)
    if lib is None:
        return None
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.hl_latent_order.argtypes = [p, i64, i64, p, p]
    lib.hl_latent_order.restype = None
    lib.hl_group_rows.argtypes = [p, i64, p, p, p, p, i64, i64, p, i64, ctypes.c_int]
    lib.hl_group_rows.restype = ctypes.c_int
    return lib


def available(floats: tuple[Tensor, ...], indices: tuple[Tensor, ...] = ()) -> bool:
    """Whether the kernel is built and every tensor is a contiguous CPU tensor of the dtype
    the kernel reads: float32 ``floats`` (tables, weights), int64 ``indices``."""
    return _lib() is not None and all(
        t.device.type == "cpu" and t.dtype == dtype and t.is_contiguous()
        for group, dtype in ((floats, torch.float32), (indices, torch.int64))
        for t in group
    )


def _check_range(name: str, ids: Tensor, bound: int) -> None:
    """C reads and writes through these ids: an id outside [0, bound) would corrupt memory."""
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= bound):
        raise ValueError(
            f"{name} must lie in [0, {bound}), got ids from {int(ids.min())} to {int(ids.max())}"
        )


def latent_order(cols: Tensor, d_sae: int) -> tuple[Tensor, Tensor]:
    """(stable permutation sorting the pairs by latent [nnz], start of each latent's pairs
    [d_sae + 1]) of the int64 latent ids ``cols``."""
    _check_range("latent ids", cols, d_sae)
    nnz = cols.numel()
    buf = torch.empty(nnz + d_sae, dtype=torch.long)
    start = torch.empty(d_sae + 1, dtype=torch.long)
    _lib().hl_latent_order(cols.data_ptr(), nnz, d_sae, buf.data_ptr(), start.data_ptr())
    return buf[:nnz], start


def group_rows(table, order, start, rows, weights, *, transposed: bool = False) -> Tensor:
    """[d_sae, d] (or [d, d_sae] when ``transposed``) sums over each latent's pairs p of
    ``weights[p] * table[rows[p]]``, the pairs taken in ``order`` (from :func:`latent_order`)."""
    d_sae, d = start.numel() - 1, table.shape[1]
    _check_range("row ids", rows, table.shape[0])
    if order.numel() != rows.numel() or int(start[-1]) != order.numel():
        raise ValueError(f"order ({order.numel()}), rows ({rows.numel()}) and the end of "
                         f"start ({int(start[-1])}) must all count the same pairs")  # fmt: skip
    out = table.new_empty((d, d_sae) if transposed else (d_sae, d))
    ld = d_sae if transposed else d
    code = _lib().hl_group_rows(table.data_ptr(), d, order.data_ptr(), start.data_ptr(),
                                rows.data_ptr(), weights.data_ptr(), 0, d_sae, out.data_ptr(),
                                ld, int(transposed))  # fmt: skip
    if code:
        raise MemoryError(f"the grouped-sum kernel could not allocate {16 * d} floats")
    return out
