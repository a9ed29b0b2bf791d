"""Matryoshka BatchTopK SAE.

Bussmann, Nabeshima, Karvonen & Nanda 2025, "Learning Multi-Level Features with Matryoshka
Sparse Autoencoders" (SAELens ``matryoshka_batchtopk``): nested prefixes of the dictionary,
latents ``[0, w_1) ⊂ [0, w_2) ⊂ ... ⊂ [0, d_sae)``, must each reconstruct the input on their
own; the loss is the BatchTopK loss of the whole dictionary plus the MSE of every inner
prefix's reconstruction ``b_dec + sum_{i < w} z_i d_i``. This pushes general, frequent
features into the early latents and limits feature absorption. The selection, the AuxK loss
and the inference threshold are BatchTopK's, so it is saved, like BatchTopK, as a JumpReLU
with one shared threshold (as SAELens does).
"""

from __future__ import annotations

from torch import Tensor

from hiddenlens.sae.architectures.batchtopk import BatchTopKSAE
from hiddenlens.sae.base import SAEOutput, register
from hiddenlens.sae.sparse import decode_at


@register("matryoshka_batchtopk")
class MatryoshkaBatchTopKSAE(BatchTopKSAE):
    """BatchTopK whose nested prefixes ``cfg.matryoshka_widths`` each reconstruct x."""

    saelens_architecture = "jumprelu"
    inference_architecture = "jumprelu"
    topk_family = True

    @classmethod
    def check_config(cls, cfg) -> None:
        widths = cfg.matryoshka_widths
        if not widths:
            raise ValueError(
                "matryoshka_batchtopk needs matryoshka_widths, the nested prefix sizes ending "
                f"at d_sae={cfg.d_sae} (e.g. [{cfg.d_sae // 4}, {cfg.d_sae}])"
            )
        if widths[-1] != cfg.d_sae:
            raise ValueError(f"matryoshka_widths={widths} must end at d_sae={cfg.d_sae}")

    def forward(self, x: Tensor, *, coefs=None, dead_mask=None, **kw) -> SAEOutput:
        out = super().forward(x, coefs=coefs, dead_mask=dead_mask, **kw)
        x = self._check_input(x)
        for w in self.cfg.matryoshka_widths[:-1]:
            inner = out.values * (out.active.cols < w)  # only the prefix's latents
            recon = decode_at(inner, self.W_dec, out.active) + self.b_dec
            out.losses[f"inner_mse_{w}"] = self._mse(recon, x)
        out.losses["loss"] = sum(v for k, v in out.losses.items() if k != "loss")
        return out

    def prefix_reconstruction(self, x: Tensor, width: int) -> Tensor:
        """Reconstruction [n, d_in] from the first ``width`` latents only (inference)."""
        if not 0 < width <= self.cfg.d_sae:
            raise ValueError(f"width must be in [1, {self.cfg.d_sae}], got {width}")
        z = self.encode(x)
        return z[:, :width] @ self.W_dec[:width] + self.b_dec
