"""Gradient TopK SAE (g-SAE).

Olmo et al. 2024/2025, "Features that Make a Difference: Leveraging Gradients for Improved
Dictionary Learning": the TopK selection ranks latents by z + beta * z * |W_dec g|, where
z = ReLU(pre-activations) and g is the gradient of the downstream loss with respect to
the input activation, so a latent with a small activation but a large effect on the loss
can be kept. The kept values are the plain activations z. With ``grad_normalize`` the
term |W_dec g| is divided by its mean over latents per row (a scale-free beta); without a
gradient (inference) selection falls back to plain TopK, as in the paper.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hiddenlens.sae.architectures.topk import TopKSAE
from hiddenlens.sae.base import register
from hiddenlens.sae.sparse import Active


def gradient_scores(z: Tensor, w_dec: Tensor, grad: Tensor, beta: float, normalize: bool):
    """Selection scores [n, d_sae]: z * (1 + beta * |W_dec g|) (optionally normalised)."""
    effect = (grad @ w_dec.t()).abs()  # [n, d_sae]: |d_i . g| per row and latent
    if normalize:
        effect = effect / effect.mean(dim=1, keepdim=True).clamp_min(1e-12)
    return z * (1.0 + beta * effect)


@register("gradient_topk")
class GradientTopKSAE(TopKSAE):
    """TopK whose selection uses the downstream gradient when one is given."""

    def select(self, pre: Tensor, grad: Tensor | None) -> Active:
        if grad is None:
            return super().select(pre, None)
        grad = grad.to(pre.dtype).reshape(pre.shape[0], self.cfg.d_in)
        score = gradient_scores(
            torch.relu(pre), self.W_dec, grad, self.cfg.grad_beta, self.cfg.grad_normalize
        )
        idx = score.topk(self.cfg.k, dim=1, sorted=False).indices
        return Active.from_topk(idx, self.cfg.d_sae)

    def encode_with_grad(self, x: Tensor, grad: Tensor) -> Tensor:
        """Dense latents [n, d_sae] selected with the gradient ``grad`` [n, d_in]."""
        x = self._check_input(x)
        pre = self.pre_acts(x)
        active = self.select(pre, grad)
        return active.to_dense(torch.relu(pre[active.rows, active.cols]))
