"""BatchTopK SAE.

Bussmann et al. 2024, "BatchTopK Sparse Autoencoders": keep the k * batch largest
activations of the whole batch (so the per-row count varies, averaging k); a global
threshold, an EMA of the smallest kept activation, replaces the batch selection at
inference (a JumpReLU with one shared threshold). Saved in SAELens format as
``jumprelu``, as SAELens does.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hiddenlens.sae.architectures.topk import _output, aux_plan
from hiddenlens.sae.base import BaseSAE, SAEOutput, register
from hiddenlens.sae.config import TOPK_ENCODER_START
from hiddenlens.sae.sparse import Active, decode_at, encode_at


@register("batchtopk")
class BatchTopKSAE(BaseSAE):
    """Training: batch-level TopK; inference: z = pre * 1[pre > threshold]."""

    saelens_architecture = "jumprelu"
    inference_architecture = "jumprelu"
    topk_family = True
    encoder_start = TOPK_ENCODER_START  # experiments/sae_init --architecture batchtopk

    def __init__(self, cfg, *, generator=None):
        super().__init__(cfg, generator=generator)
        # float64: the EMA accumulates many small updates.
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64))
        self.threshold_lr = 0.01

    def encode(self, x: Tensor) -> Tensor:
        """Latents [n, d_sae] using the exported threshold."""
        pre = self.pre_acts(self._check_input(x))
        return pre * (pre > self.threshold.to(pre.dtype))

    def forward(self, x: Tensor, *, coefs=None, dead_mask=None, **_) -> SAEOutput:
        x = self._check_input(x)
        n, d_sae = x.shape[0], self.cfg.d_sae
        x_c = self.center(x).detach()
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, x_c, self.W_enc)
            flat = torch.relu(pre).reshape(-1)
            top = flat.topk(min(int(self.cfg.k * n), flat.numel()), sorted=False)
            pos = top.indices[top.values > 0]
            active = Active.from_coords(pos // d_sae, pos % d_sae, n, d_sae)
            if self.training and pos.numel() > 0:
                lo = top.values[top.values > 0].min().double()
                self.threshold.mul_(1 - self.threshold_lr).add_(self.threshold_lr * lo)
        b_dec = self.b_dec if self.cfg.apply_b_dec_to_input else None
        v_pre = pre[active.rows, active.cols]
        values = torch.relu(encode_at(x_c, b_dec, self.W_enc, self.b_enc, v_pre, active))
        recon = decode_at(values, self.W_dec, active) + self.b_dec
        losses = {
            "mse": self._mse(recon, x),
            "aux": self._auxk(x, x_c, b_dec, pre, recon, coefs, dead_mask),
        }
        losses["loss"] = losses["mse"] + losses["aux"]
        return _output(recon, losses, active, values, n, d_sae)

    def _auxk(self, x, x_c, b_dec, pre, recon, coefs, dead_mask) -> Tensor:
        dead, k_aux, scale = aux_plan(self, coefs, dead_mask)
        if dead is None:
            return recon.new_zeros(())
        with torch.no_grad():
            pd = pre[:, dead]
            j = pd.topk(k_aux, dim=1, sorted=False).indices
            cols, perm = dead[j].sort(dim=1)
            a_pre = pd.gather(1, j).gather(1, perm)
        aux = Active.from_topk(cols, self.cfg.d_sae)
        v = torch.relu(encode_at(x_c, b_dec, self.W_enc, self.b_enc, a_pre.reshape(-1), aux))
        e_hat = decode_at(v, self.W_dec, aux)
        alpha = float((coefs or {}).get("aux", 0.0))
        return alpha * scale * self._mse(e_hat, (x - recon).detach())

    def sparsity_params(self) -> dict[str, Tensor]:
        out = {n: p.detach() for n, p in self.named_parameters()}
        out["threshold"] = self.threshold.float().expand(self.cfg.d_sae).clone()
        return out

    def load_exported(self, tensors: dict[str, Tensor]) -> None:
        tensors = dict(tensors)
        thr = tensors.pop("threshold", None)
        super().load_exported(tensors)
        if thr is not None:
            self.threshold.fill_(float(thr.reshape(-1)[0]))
