"""Sparse encode/decode kernels for TopK-family SAEs.

A TopK step needs one dense matmul (the encoder pre-activations, to choose the active
latents). Everything after it touches only the active (row, latent) pairs, as in the
sparse decoder of Gao et al. 2024 ("Scaling and evaluating sparse autoencoders") and
EleutherAI sparsify: decoding is an ``embedding_bag`` over decoder rows; the gradient of
the active values is a sampled dense-dense product (``torch.sparse.sampled_addmm``); the
weight gradients are ``embedding_bag`` sums over the pairs grouped by latent. Each costs
O(nnz * d_in) instead of O(batch * d_sae * d_in).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from hiddenlens.sae import sparse_kernel


@dataclass
class Active:
    """Active (row, latent) pairs of a batch, sorted by row (then latent, except from_topk).

    rows, cols: [nnz] long; offsets: [n_rows] start of each row's pairs; crow: [n_rows + 1];
    by_latent: [nnz] permutation sorting the pairs by latent; latent_offsets: [d_sae].
    """

    rows: Tensor
    cols: Tensor
    offsets: Tensor
    crow: Tensor
    by_latent: Tensor
    latent_offsets: Tensor
    n_rows: int
    d_sae: int

    @property
    def nnz(self) -> int:
        return int(self.cols.numel())

    @classmethod
    def from_coords(cls, rows: Tensor, cols: Tensor, n_rows: int, d_sae: int) -> Active:
        """Build from unsorted coordinates (any order)."""
        key = rows * d_sae + cols
        order = torch.argsort(key)
        rows, cols = rows[order], cols[order]
        counts = torch.bincount(rows, minlength=n_rows)
        crow = torch.zeros(n_rows + 1, dtype=torch.long, device=rows.device)
        crow[1:] = torch.cumsum(counts, 0)
        by_latent, latent_offsets = _latent_order(cols, d_sae)
        return cls(rows, cols, crow[:-1], crow, by_latent, latent_offsets, n_rows, d_sae)

    @classmethod
    def from_topk(cls, idx: Tensor, d_sae: int) -> Active:
        """Build from per-row indices ``idx`` [n_rows, k], distinct within rows (any order:
        a row's pairs keep it, and the latent order keeps rows ascending)."""
        n_rows, k = idx.shape
        cols = idx.reshape(-1)
        rows = torch.arange(n_rows, device=idx.device).repeat_interleave(k)
        crow = torch.arange(0, n_rows * k + 1, k, device=idx.device)
        by_latent, latent_offsets = _latent_order(cols, d_sae)
        return cls(rows, cols, crow[:-1], crow, by_latent, latent_offsets, n_rows, d_sae)

    def to_dense(self, values: Tensor) -> Tensor:
        out = values.new_zeros(self.n_rows, self.d_sae)
        out[self.rows, self.cols] = values
        return out

    @functools.cached_property
    def _fits_int32(self) -> bool:
        return max(self.n_rows, self.d_sae, self.nnz) < 2**31 - 1

    @functools.cached_property
    def _latent_bags(self) -> tuple[Tensor, Tensor]:
        """(row of each pair in latent order, latent offsets), int32 where they fit: both
        weight gradients use them, and ``embedding_bag`` is ~1.8x faster on int32 (CPU)."""
        rows = self.rows[self.by_latent]
        if self._fits_int32:
            return rows.int(), self.latent_offsets.int()
        return rows, self.latent_offsets

    @functools.cached_property
    def _row_bags(self) -> tuple[Tensor, Tensor]:
        """(latent of each pair, crow) in row order, int32 where they fit: the decode and
        its value gradient (``sampled_addmm``) both walk the pairs row by row."""
        if self._fits_int32:
            return self.cols.int(), self.crow.int()
        return self.cols, self.crow

    def _group_by_latent(self, table: Tensor, weights: Tensor, *, transposed=False) -> Tensor:
        """[d_sae, d] = sum over pairs (r, l) of weights * table[r], grouped by latent l;
        [d, d_sae] contiguous when ``transposed`` (W_enc's layout)."""
        weights = weights.contiguous()
        if sparse_kernel.available((table, weights), (self.rows, self.by_latent)):
            start = torch.cat([self.latent_offsets, self.latent_offsets.new_full((1,), self.nnz)])
            return sparse_kernel.group_rows(
                table, self.by_latent, start, self.rows, weights, transposed=transposed
            )
        rows, offsets = self._latent_bags
        out = F.embedding_bag(
            rows, table, offsets, mode="sum", per_sample_weights=weights[self.by_latent]
        )
        return out.t().contiguous() if transposed else out


def _latent_order(cols: Tensor, d_sae: int) -> tuple[Tensor, Tensor]:
    """(stable permutation sorting the pairs by latent, start of each latent's pairs)."""
    if sparse_kernel.available((), (cols,)):  # a counting sort in C
        order, start = sparse_kernel.latent_order(cols, d_sae)
        return order, start[:-1]
    # a stable sort of int32 keys is ~2x faster than of int64 ones (CPU radix sort)
    keys = cols.int() if d_sae < 2**31 - 1 and cols.numel() < 2**31 - 1 else cols
    by_latent = torch.argsort(keys, stable=True)
    lat_counts = torch.bincount(cols, minlength=d_sae)
    latent_offsets = torch.zeros(d_sae, dtype=torch.long, device=cols.device)
    latent_offsets[1:] = torch.cumsum(lat_counts, 0)[:-1]
    return by_latent, latent_offsets


class _EncodeAt(torch.autograd.Function):
    """Pre-activations at the active pairs, with sparse gradients.

    forward(x_c [n, d_in] (constant), b_dec [d_in] | None, W_enc [d_in, d_sae],
    b_enc [d_sae], values [nnz], active) returns ``values`` (computed by the caller under
    no_grad as ((x - b_dec) @ W_enc + b_enc) at the pairs). Gradients touch only active
    latents; the decoder bias, subtracted from every row, gets -W_enc @ (per-latent sum).
    """

    @staticmethod
    def forward(ctx, x_c, b_dec, w_enc, b_enc, values, active):  # noqa: D102
        ctx.save_for_backward(x_c, w_enc)
        ctx.active = active
        return values.clone()

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        x_c, w_enc = ctx.saved_tensors
        a: Active = ctx.active
        g_bdec = g_w = None
        per_latent = g.new_zeros(a.d_sae).index_add_(0, a.cols, g)  # = grad of b_enc
        if ctx.needs_input_grad[1]:
            g_bdec = -(w_enc @ per_latent)
        if ctx.needs_input_grad[2]:  # laid out like W_enc (the fused Adam needs it)
            if w_enc.t().is_contiguous():  # W_enc stored as [d_sae, d_in]
                g_w = a._group_by_latent(x_c, g).t()
            else:
                g_w = a._group_by_latent(x_c, g, transposed=True)
        g_b = per_latent if ctx.needs_input_grad[3] else None
        return None, g_bdec, g_w, g_b, None, None


class _DecodeAt(torch.autograd.Function):
    """Sum of decoder rows weighted by the active values: [n_rows, d_in], no bias."""

    @staticmethod
    def forward(ctx, values, w_dec, active):  # noqa: D102
        ctx.save_for_backward(values, w_dec)
        ctx.active = active
        cols, crow = active._row_bags
        return F.embedding_bag(cols, w_dec, crow[:-1], mode="sum", per_sample_weights=values)

    @staticmethod
    def backward(ctx, gy):  # noqa: D102
        values, w_dec = ctx.saved_tensors
        a: Active = ctx.active
        g_v = g_w = None
        gy = gy.contiguous()
        if ctx.needs_input_grad[0]:
            # <gy_r, W_dec[l]> only at the active pairs: a sampled dense-dense product.
            with warnings.catch_warnings():
                # "Sparse CSR tensor support is in beta": we only use sampled_addmm.
                warnings.simplefilter("ignore", UserWarning)
                cols, crow = a._row_bags
                mask = torch.sparse_csr_tensor(
                    crow, cols, values.detach(), (a.n_rows, a.d_sae), check_invariants=False
                )
            g_v = torch.sparse.sampled_addmm(mask, gy, w_dec.t(), beta=0.0).values()
        if ctx.needs_input_grad[1]:
            g_w = a._group_by_latent(gy, values.detach())
        return g_v, g_w, None


def encode_at(
    x_c: Tensor, b_dec: Tensor | None, w_enc: Tensor, b_enc: Tensor, values: Tensor, active: Active
) -> Tensor:
    """Differentiable pre-activations [nnz] at ``active``.

    x_c: the encoder input (x - b_dec, or x); b_dec: the subtracted bias or None;
    values: the pre-activations at the pairs, computed without autograd.
    """
    return _EncodeAt.apply(x_c.detach(), b_dec, w_enc, b_enc, values, active)


def decode_at(values: Tensor, w_dec: Tensor, active: Active) -> Tensor:
    """Decode sparse latents: sum of ``values`` times decoder rows, [n_rows, d_in]."""
    return _DecodeAt.apply(values, w_dec, active)
