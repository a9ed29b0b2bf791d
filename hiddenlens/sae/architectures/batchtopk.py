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

from hiddenlens.sae.architectures.topk import sparse_forward
from hiddenlens.sae.base import BaseSAE, SAEOutput, register
from hiddenlens.sae.sparse import Active


@register("batchtopk")
class BatchTopKSAE(BaseSAE):
    """Training: batch-level TopK; inference: z = pre * 1[pre > threshold]."""

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
        n = x.shape[0]
        with torch.no_grad():
            pre = self.pre_acts(x)
            flat = torch.relu(pre).reshape(-1)
            keep = min(int(self.cfg.k * n), flat.numel())
            top = flat.topk(keep, sorted=False)
            pos = top.indices[top.values > 0]
            active = Active.from_coords(
                pos // self.cfg.d_sae, pos % self.cfg.d_sae, n, self.cfg.d_sae
            )
            if self.training and pos.numel() > 0:
                lo = top.values[top.values > 0].min().double()
                self.threshold.mul_(1 - self.threshold_lr).add_(self.threshold_lr * lo)
        return sparse_forward(self, x, pre, active, coefs, dead_mask)

    def sparsity_params(self) -> dict[str, Tensor]:
        out = {n: p.detach() for n, p in self.named_parameters()}
        out["threshold"] = torch.full((self.cfg.d_sae,), float(self.threshold))
        return out

    def load_exported(self, tensors: dict[str, Tensor]) -> None:
        tensors = dict(tensors)
        thr = tensors.pop("threshold", None)
        super().load_exported(tensors)
        if thr is not None:
            self.threshold.fill_(float(thr.reshape(-1)[0]))
