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

from hiddenlens.sae.architectures.topk import TopKSAE, select_topk
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

    saelens_architecture = "topk"
    store_hooks = ("", "#grad")  # the downstream gradient is cached beside the hook
    pair_role = "grad"

    def score_fn(self, grad: Tensor | None):
        if grad is None:
            return None
        grad = grad.detach().to(self.W_dec.dtype).reshape(-1, self.cfg.d_in)
        w_dec = self.W_dec.detach()

        def score(pre: Tensor, rows: slice) -> Tensor:
            return gradient_scores(
                torch.relu(pre), w_dec, grad[rows], self.cfg.grad_beta, self.cfg.grad_normalize
            )

        return score

    @torch.no_grad()
    def encode_with_grad(self, x: Tensor, grad: Tensor) -> Tensor:
        """Dense latents [n, d_sae] selected with the gradient ``grad`` [n, d_in]."""
        x = self._check_input(x)
        sel = select_topk(self, self.center(x), self.cfg.k, self.score_fn(grad))
        active = Active.from_topk(sel.idx, self.cfg.d_sae)
        return active.to_dense(torch.relu(sel.pre.reshape(-1)))
