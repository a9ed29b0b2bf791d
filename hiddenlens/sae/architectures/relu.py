"""ReLU SAE with a decoder-norm-weighted L1 penalty.

Bricken et al. 2023 ("Towards Monosemanticity"); the penalty sum_i f_i ||d_i|| follows
Conerly et al. 2024 (Anthropic April update), so shrinking decoder rows cannot dodge it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hiddenlens.sae.base import BaseSAE, SAEOutput, register


@register("relu")
class ReluSAE(BaseSAE):
    """z = ReLU((x - b_dec) W_enc + b_enc); loss = ||x - x_hat||^2 + l1 * sum_i z_i ||d_i||."""

    saelens_architecture = "standard"

    def encode(self, x: Tensor) -> Tensor:
        """Latents [n, d_sae] for inputs [n, d_in]."""
        return torch.relu(self.pre_acts(self._check_input(x)))

    def forward(self, x: Tensor, *, coefs: dict | None = None, **_: object) -> SAEOutput:
        x = self._check_input(x)
        z = torch.relu(self.pre_acts(x))
        l1 = float((coefs or {}).get("l1", 0.0))
        penalty = (z * self.W_dec.norm(dim=1)).sum(-1).mean()
        return self._dense_output(x, z, {"l1": l1 * penalty})
