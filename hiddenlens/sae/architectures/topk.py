"""TopK SAE with the AuxK loss for dead latents.

Gao et al. 2024, "Scaling and evaluating sparse autoencoders": keep the k largest
pre-activations (then ReLU), no sparsity penalty; AuxK reconstructs the residual from
the top k_aux dead latents, weight alpha = 1/32. Training is sparse (see
``hiddenlens.sae.sparse``): only the dense encoder matmul touches every latent, and it is
done in row chunks, each written into one reused tile that the bias add and the top-k
selection then read; the full [batch, d_sae] pre-activation matrix is never stored. The top-k of
each tile is exact but filtered (:func:`topk_indices`): the k largest entries of a row lie in
groups whose maxima reach the k-th largest group maximum, so only those groups' entries are
ranked. On the CPU a C kernel does it in one pass (:mod:`hiddenlens.sae.topk_kernel`); else
two rounds of torch calls shrink each row from d_sae to 8k candidates. With
``sae.selection_dtype = torch.bfloat16`` (``TrainConfig.encoder_dtype``) that matmul runs
in bf16 for the choice only; the chosen pairs' pre-activations are recomputed in fp32 from
the fp32 master weights (k of d_sae dot products), so the values and gradients stay fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from hiddenlens.sae import topk_kernel
from hiddenlens.sae.base import BaseSAE, SAEOutput, register
from hiddenlens.sae.config import TOPK_ENCODER_START
from hiddenlens.sae.sparse import Active, decode_at, encode_at

CHUNK_ROWS = 1024


@dataclass
class Selection:
    """Chosen (row, latent) pairs with their pre-activations; optional AuxK pairs."""

    idx: Tensor  # [n, k] distinct within rows; unordered on CPU, ascending elsewhere
    pre: Tensor  # [n, k]
    aux_idx: Tensor | None = None
    aux_pre: Tensor | None = None


#: (group size, sub-group size) of the two rounds of :func:`topk_indices` (powers of two)
TOPK_GROUPS = (32, 8)


def _top_groups(v: Tensor, g: int, k: int) -> tuple[Tensor, Tensor]:
    """Ids [c, k] of the k groups of ``g`` columns of ``v`` [c, L] with the largest maxima,
    and their entries [c, k * g] (group by group)."""
    c, n_groups = v.shape[0], v.shape[1] // g
    ids = v.view(c, n_groups, g).amax(-1).topk(k, dim=1, sorted=False).indices
    rows = torch.arange(0, c * n_groups, n_groups, device=v.device).unsqueeze(1)
    entries = v.reshape(c * n_groups, g).index_select(0, (ids + rows).view(-1))
    return ids, entries.view(c, k * g)


def topk_indices(score: Tensor, k: int) -> Tensor:
    """Column indices [c, k] (unordered) of the k largest entries of each row of ``score``.

    The same set as ``score.topk(k, dim=1).indices`` (among tied values either may be
    chosen). On the CPU in float32 it is the one-pass C kernel (:mod:`.topk_kernel`, ~6x
    ``torch.topk`` on a 1,024 x 6,144 tile). Without it (no C compiler, another dtype) the
    same filter runs as torch calls: an entry among a row's k largest lies in one of the k
    groups with the largest maxima (else k groups hold a larger entry each); two rounds of
    that filter leave k * g2 candidates, ~2x faster than ``torch.topk`` on that tile, whose
    cost grows with the row length. Short or indivisible rows use ``torch.topk``.
    """
    if topk_kernel.available(score, k):
        return topk_kernel.topk_rows(score, k)[1]
    c, n = score.shape
    g1, g2 = TOPK_GROUPS
    if n % g1 or n // g1 < 4 * k or not score.is_contiguous() or score.device.type != "cpu":
        return score.topk(k, dim=1, sorted=False).indices
    ids1, cand1 = _top_groups(score, g1, k)
    ids2, cand2 = _top_groups(cand1, g2, k)
    j = cand2.topk(k, dim=1, sorted=False).indices  # position in cand2
    # group sizes are powers of two: shifts and masks, not int64 division (not vectorised)
    s1, s2 = g1.bit_length() - 1, g2.bit_length() - 1
    pos = (ids2.gather(1, j >> s2) << s2) | (j & (g2 - 1))  # position in cand1
    return (ids1.gather(1, pos >> s1) << s1) | (pos & (g1 - 1))


@torch.no_grad()  # a choice: the values it returns carry no graph (sparse_forward adds it)
def select_topk(
    sae: BaseSAE, x_c: Tensor, k: int, score_fn=None, dead: Tensor | None = None, k_aux: int = 0
) -> Selection:
    """Row-chunked pre-activations and top-k choice (by ``score_fn(pre, rows)`` if given).

    Every chunk's pre-activations go into one reused [CHUNK_ROWS, d_sae] tile: a fresh
    25 MB tensor per chunk costs its page faults again each time (~12% of a CPU step)."""
    n = x_c.shape[0]
    idx, pre = x_c.new_empty(n, k, dtype=torch.long), x_c.new_empty(n, k)
    aux = dead is not None and k_aux > 0
    if aux:
        a_idx, a_pre = x_c.new_empty(n, k_aux, dtype=torch.long), x_c.new_empty(n, k_aux)
    low = getattr(sae, "selection_dtype", torch.float32)
    exact = low == torch.float32
    w, b, xs = (
        (sae.W_enc, sae.b_enc, x_c)
        if exact
        else (sae.W_enc.to(low), sae.b_enc.to(low), x_c.to(low))
    )
    tile = xs.new_empty(min(CHUNK_ROWS, n), w.shape[1])
    # the C top-k adds the bias as it reads the tile: a plain matmul, no bias pass over it
    fold = exact and score_fn is None and topk_kernel.available(tile, k)
    for s in range(0, n, CHUNK_ROWS):
        rows = slice(s, min(s + CHUNK_ROWS, n))
        if fold:
            p = torch.mm(xs[rows], w, out=tile[: rows.stop - s])  # [c, d_sae], bias not added
            pre[rows], idx[rows] = topk_kernel.topk_rows(p, k, bias=b)
        else:
            p = torch.addmm(b, xs[rows], w, out=tile[: rows.stop - s])  # [c, d_sae]
            score = p if score_fn is None else score_fn(p, rows)
            i = topk_indices(score, k)  # unordered: CPU kernels need no order (sorted below)
            idx[rows], pre[rows] = i, p.gather(1, i) if exact else _pre_at(sae, x_c[rows], i)
        if aux:
            pd = p[:, dead] + b[dead] if fold else p[:, dead]
            j = dead[pd.topk(k_aux, dim=1, sorted=False).indices]
            a_idx[rows] = j
            if exact:
                a_pre[rows] = p.gather(1, j) + b[j] if fold else p.gather(1, j)
            else:
                a_pre[rows] = _pre_at(sae, x_c[rows], j)
    if x_c.device.type != "cpu":  # cuSPARSE's CSR (sampled_addmm) assumes sorted columns
        idx, pre = _sorted_pairs(idx, pre)
        if aux:
            a_idx, a_pre = _sorted_pairs(a_idx, a_pre)
    return Selection(idx, pre, a_idx if aux else None, a_pre if aux else None)


def _sorted_pairs(idx: Tensor, pre: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's latents in ascending order, their pre-activations permuted alike."""
    idx, perm = idx.sort(dim=1)
    return idx, pre.gather(1, perm)


def _pre_at(sae: BaseSAE, x_rows: Tensor, cols: Tensor) -> Tensor:
    """fp32 pre-activations ``x W_enc[:, cols] + b_enc[cols]`` for each row's columns [c, k]."""
    return torch.einsum("cd,ckd->ck", x_rows, sae.W_enc.t()[cols]) + sae.b_enc[cols]


def aux_plan(sae: BaseSAE, coefs, dead_mask) -> tuple[Tensor | None, int, float]:
    """(dead latent indices, k_aux, scale) for AuxK; k_aux = 0 when it is off."""
    coefs = coefs or {}
    if dead_mask is None or float(coefs.get("aux", 0.0)) == 0.0:
        return None, 0, 0.0
    dead = torch.nonzero(dead_mask, as_tuple=False).squeeze(1)
    if dead.numel() == 0:
        return None, 0, 0.0
    k_aux = int(coefs.get("aux_k") or sae.cfg.d_in // 2)
    scale = min(dead.numel() / k_aux, 1.0)  # fewer dead latents: a smaller loss (sparsify)
    return dead, min(k_aux, int(dead.numel())), scale


def sparse_forward(
    sae: BaseSAE, x: Tensor, x_c: Tensor, sel: Selection, coefs, aux_scale: float = 0.0,
    *, target: Tensor | None = None, extra: Tensor | None = None,
) -> SAEOutput:  # fmt: skip
    """Shared TopK-family training forward given the chosen pairs.

    target: the rows to reconstruct (default ``x``; a transcoder's output rows); extra: a
    term added to the reconstruction (a skip connection's ``x W_skip^T``).
    """
    n, d_sae = x.shape[0], sae.cfg.d_sae
    target = x if target is None else target
    b_dec = sae.b_dec if sae.cfg.apply_b_dec_to_input else None
    active = Active.from_topk(sel.idx, d_sae)
    values = torch.relu(encode_at(x_c, b_dec, sae.W_enc, sae.b_enc, sel.pre.reshape(-1), active))
    recon = decode_at(values, sae.W_dec, active) + sae.b_dec
    if extra is not None:
        recon = recon + extra
    x = target
    losses = {"mse": sae._mse(recon, x), "aux": recon.new_zeros(())}
    if sel.aux_idx is not None:
        aux = Active.from_topk(sel.aux_idx, d_sae)
        v = torch.relu(encode_at(x_c, b_dec, sae.W_enc, sae.b_enc, sel.aux_pre.reshape(-1), aux))
        e_hat = decode_at(v, sae.W_dec, aux)
        resid = (x - recon).detach()
        alpha = float((coefs or {}).get("aux", 0.0))
        losses["aux"] = alpha * aux_scale * sae._mse(e_hat, resid)
    losses["loss"] = losses["mse"] + losses["aux"]
    return _output(recon, losses, active, values, n, d_sae)


def _output(recon, losses, active, values, n, d_sae) -> SAEOutput:
    on = values.detach() > 0
    fired = torch.zeros(d_sae, dtype=torch.bool, device=recon.device)
    fired[active.cols[on]] = True
    l0 = on.sum().float() / max(n, 1)
    return SAEOutput(recon=recon, losses=losses, fired=fired, l0=l0, active=active, values=values)


def topk_dense(pre: Tensor, k: int) -> Tensor:
    """Dense latents: ReLU of the k largest entries per row, zeros elsewhere."""
    flat = pre.reshape(-1, pre.shape[-1]) if pre.dim() != 2 else pre
    if not pre.requires_grad and topk_kernel.available(flat, k):  # inference: the C top-k
        v, i = topk_kernel.topk_rows(flat, k)
        v, i = v.view(*pre.shape[:-1], k), i.view(*pre.shape[:-1], k)
    else:
        v, i = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, i, torch.relu(v))


@register("topk")
class TopKSAE(BaseSAE):
    """z = ReLU(TopK_k((x - b_dec) W_enc + b_enc)); exactly k selected latents per row."""

    saelens_architecture = "topk"
    topk_family = True
    encoder_start = TOPK_ENCODER_START  # experiments/sae_init: 2-5% lower held-out FVU
    low_precision_selection = True  # select_topk honours ``selection_dtype``

    def encode(self, x: Tensor) -> Tensor:
        """Latents [n, d_sae] for inputs [n, d_in]."""
        return topk_dense(self.pre_acts(self._check_input(x)), self.cfg.k)

    def score_fn(self, grad: Tensor | None):
        """Selection score of a chunk of pre-activations; None means the pre-activations."""
        return None

    def forward(self, x: Tensor, *, coefs=None, dead_mask=None, grad=None, **_) -> SAEOutput:
        x = self._check_input(x)
        x_c = self.center(x).detach()
        dead, k_aux, scale = aux_plan(self, coefs, dead_mask)
        with torch.no_grad():
            sel = select_topk(self, x_c, self.cfg.k, self.score_fn(grad), dead, k_aux)
        return sparse_forward(self, x, x_c, sel, coefs, scale)
