"""JumpReLU SAE trained with straight-through estimators.

Rajamanoharan et al. 2024, "Jumping Ahead: Improving Reconstruction Fidelity with JumpReLU
Sparse Autoencoders": z = pre * H(pre - theta) with a learned per-latent threshold theta;
the L0 penalty sum_i H(pre_i - theta_i) and the jump get pseudo-gradients with respect to
theta from a rectangle kernel of bandwidth epsilon. theta is stored as log(theta) while
training and exported as ``threshold`` (SAELens name).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from hiddenlens.sae.base import BaseSAE, SAEOutput, register


def _rect(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, eps):  # noqa: D102
        ctx.save_for_backward(x, theta)
        ctx.eps = eps
        return x * (x > theta)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        x, theta = ctx.saved_tensors
        g_x = (x > theta).to(g.dtype) * g
        g_t = (-(theta / ctx.eps) * _rect((x - theta) / ctx.eps) * g).sum(0)
        return g_x, g_t, None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, eps):  # noqa: D102
        ctx.save_for_backward(x, theta)
        ctx.eps = eps
        return (x > theta).to(x.dtype)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        x, theta = ctx.saved_tensors
        g_t = (-(1.0 / ctx.eps) * _rect((x - theta) / ctx.eps) * g).sum(0)
        return None, g_t, None


@register("jumprelu")
class JumpReLUSAE(BaseSAE):
    """z = pre * 1[pre > theta]; loss = ||x - x_hat||^2 + l0_coef * sum_i H(pre_i - theta_i)."""

    saelens_architecture = "jumprelu"

    def __init__(self, cfg, *, generator=None):
        super().__init__(cfg, generator=generator)
        init = math.log(cfg.jumprelu_init_threshold)
        self.log_threshold = nn.Parameter(torch.full((cfg.d_sae,), init))

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def encode(self, x: Tensor) -> Tensor:
        """Latents [n, d_sae]."""
        pre = self.pre_acts(self._check_input(x))
        return pre * (pre > self.threshold)

    def forward(self, x: Tensor, *, coefs=None, **_) -> SAEOutput:
        x = self._check_input(x)
        pre = self.pre_acts(x)
        theta, eps = self.threshold, self.cfg.jumprelu_bandwidth
        z = _JumpReLU.apply(pre, theta, eps)
        l0 = _Step.apply(pre, theta, eps).sum(-1).mean()
        coef = float((coefs or {}).get("l1", 0.0))
        return self._dense_output(x, z, {"l0": coef * l0})

    def sparsity_params(self) -> dict[str, Tensor]:
        out = {n: p.detach() for n, p in self.named_parameters() if n != "log_threshold"}
        out["threshold"] = self.threshold.detach()
        return out

    def load_exported(self, tensors: dict[str, Tensor]) -> None:
        tensors = dict(tensors)
        if "threshold" not in tensors:
            raise ValueError("jumprelu weights need a 'threshold' tensor")
        thr = tensors.pop("threshold")
        tensors["log_threshold"] = thr.clamp_min(1e-12).log()
        # An SAELens-exported threshold of exactly 0 round-trips as 1e-12 (same encode
        # up to pre-activations in (0, 1e-12]).
        super().load_exported(tensors)

    @torch.no_grad()
    def fold_scale(self, scale: float) -> None:
        # pre-activations are unchanged by the fold, so the threshold is too.
        super().fold_scale(scale)
