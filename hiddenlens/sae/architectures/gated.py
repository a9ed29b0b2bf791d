"""Gated SAE.

Rajamanoharan et al. 2024, "Improving Dictionary Learning with Gated Sparse Autoencoders":
a gate path pi_gate = x_c W_enc + b_gate decides which latents fire, a magnitude path with
shared, rescaled weights (W_enc * exp(r_mag)) + b_mag sets their size; the L1 penalty acts
on ReLU(pi_gate) only, and an auxiliary loss reconstructs x from ReLU(pi_gate) through a
frozen copy of the decoder.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hiddenlens.sae.base import BaseSAE, SAEOutput, register


@register("gated")
class GatedSAE(BaseSAE):
    """z = 1[pi_gate > 0] * ReLU(pi_mag)."""

    saelens_architecture = "gated"

    def __init__(self, cfg, *, generator=None):
        super().__init__(cfg, generator=generator)
        del self.b_enc
        self.b_gate = nn.Parameter(torch.zeros(cfg.d_sae))
        self.r_mag = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_mag = nn.Parameter(torch.zeros(cfg.d_sae))

    def pre_acts(self, x: Tensor) -> Tensor:
        return self.center(x) @ (self.W_enc * self.r_mag.exp()) + self.b_mag

    def _paths(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x_c = self.center(x)
        gate = x_c @ self.W_enc + self.b_gate
        mag = x_c @ (self.W_enc * self.r_mag.exp()) + self.b_mag
        return gate, mag

    def encode(self, x: Tensor) -> Tensor:
        """Latents [n, d_sae]."""
        gate, mag = self._paths(self._check_input(x))
        return (gate > 0).to(mag.dtype) * torch.relu(mag)

    def forward(self, x: Tensor, *, coefs=None, **_) -> SAEOutput:
        x = self._check_input(x)
        gate, mag = self._paths(x)
        z = (gate > 0).to(mag.dtype) * torch.relu(mag)
        coef = float((coefs or {}).get("l1", 0.0))
        gate_act = torch.relu(gate)
        l1 = (gate_act * self.W_dec.norm(dim=1)).sum(-1).mean()
        via_gate = gate_act @ self.W_dec.detach() + self.b_dec.detach()
        aux = self._mse(via_gate, x)
        return self._dense_output(x, z, {"l1": coef * l1, "aux": aux})
