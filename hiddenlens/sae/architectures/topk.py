"""TopK SAE with the AuxK loss for dead latents.

Gao et al. 2024, "Scaling and evaluating sparse autoencoders": keep the k largest
pre-activations (then ReLU), no sparsity penalty; AuxK reconstructs the residual from
the top k_aux dead latents, weight alpha = 1/32. Training is sparse (see
``hiddenlens.sae.sparse``): only the dense encoder matmul touches every latent.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hiddenlens.sae.base import BaseSAE, SAEOutput, register
from hiddenlens.sae.sparse import Active, decode_at, encode_at


def sparse_forward(sae: BaseSAE, x: Tensor, pre: Tensor, active: Active, coefs, dead_mask):
    """Shared TopK-family training forward given the chosen active pairs."""
    x_c = sae.center(x)
    values = torch.relu(encode_at(x_c, sae.W_enc, sae.b_enc, pre, active))
    recon = decode_at(values, sae.W_dec, active) + sae.b_dec
    losses = {"mse": sae._mse(recon, x)}
    losses["aux"] = auxk_loss(sae, x, x_c, pre, recon, coefs, dead_mask)
    losses["loss"] = losses["mse"] + losses["aux"]
    on = values.detach() > 0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=x.device)
    fired[active.cols[on]] = True
    l0 = on.sum().float() / max(x.shape[0], 1)
    return SAEOutput(recon=recon, losses=losses, fired=fired, l0=l0, active=active, values=values)


def auxk_loss(sae, x, x_c, pre, recon, coefs, dead_mask) -> Tensor:
    """alpha * min(n_dead / k_aux, 1) * ||e - e_hat||^2 with e_hat from the top dead latents."""
    coefs = coefs or {}
    alpha = float(coefs.get("aux", 0.0))
    if dead_mask is None or alpha == 0.0:
        return recon.new_zeros(())
    dead = torch.nonzero(dead_mask, as_tuple=False).squeeze(1)
    n_dead = int(dead.numel())
    if n_dead == 0:
        return recon.new_zeros(())
    k_aux = int(coefs.get("aux_k") or sae.cfg.d_in // 2)
    scale = min(n_dead / k_aux, 1.0)
    k_aux = min(k_aux, n_dead)
    j = pre[:, dead].topk(k_aux, dim=1, sorted=False).indices
    aux = Active.from_topk(dead[j], sae.cfg.d_sae)
    v = torch.relu(encode_at(x_c, sae.W_enc, sae.b_enc, pre, aux))
    e_hat = decode_at(v, sae.W_dec, aux)
    resid = (x - recon).detach()
    return alpha * scale * (e_hat - resid).pow(2).sum(-1).mean()


def topk_dense(pre: Tensor, k: int) -> Tensor:
    """Dense latents: ReLU of the k largest entries per row, zeros elsewhere."""
    v, i = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter_(-1, i, torch.relu(v))


@register("topk")
class TopKSAE(BaseSAE):
    """z = ReLU(TopK_k((x - b_dec) W_enc + b_enc)); exactly k selected latents per row."""

    def encode(self, x: Tensor) -> Tensor:
        """Latents [n, d_sae] for inputs [n, d_in]."""
        return topk_dense(self.pre_acts(self._check_input(x)), self.cfg.k)

    def select(self, pre: Tensor, grad: Tensor | None) -> Active:
        idx = pre.topk(self.cfg.k, dim=1, sorted=False).indices
        return Active.from_topk(idx, self.cfg.d_sae)

    def forward(self, x: Tensor, *, coefs=None, dead_mask=None, grad=None, **_) -> SAEOutput:
        x = self._check_input(x)
        with torch.no_grad():
            pre = self.pre_acts(x)
            active = self.select(pre, grad)
        return sparse_forward(self, x, pre, active, coefs, dead_mask)
