"""A minimal Adam (Kingma & Ba 2015) with a tensors + JSON state for safe checkpoints.

Same update as ``torch.optim.Adam`` (single-tensor path): m <- b1 m + (1-b1) g,
v <- b2 v + (1-b2) g^2, p <- p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). Kept
here because its state is plain tensors (safetensors, no pickle) and because creating a
``torch.optim`` optimizer imports torch._dynamo, ~10 s per process on a loaded CPU box.
"""

from __future__ import annotations

import math

import torch


class Adam:
    """Adam over a list of parameters; ``param_groups[0]["lr"]`` may be changed per step."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = list(params)
        self.param_groups = [{"lr": float(lr), "betas": tuple(betas), "eps": float(eps)}]
        self.t = 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        g0 = self.param_groups[0]
        lr, (b1, b2), eps = g0["lr"], g0["betas"], g0["eps"]
        self.t += 1
        bc1, bc2_sqrt = 1 - b1**self.t, math.sqrt(1 - b2**self.t)
        for p, m, v in zip(self.params, self.m, self.v):
            if p.grad is None:
                continue
            g = p.grad
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / bc2_sqrt).add_(eps)
            p.addcdiv_(m, denom, value=-lr / bc1)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        out = {f"m.{i}": m for i, m in enumerate(self.m)}
        out.update({f"v.{i}": v for i, v in enumerate(self.v)})
        return out

    def state_json(self) -> dict:
        g = self.param_groups[0]
        return {
            "t": self.t,
            "lr": g["lr"],
            "betas": list(g["betas"]),
            "eps": g["eps"],
            "n_params": len(self.params),
        }

    def load_state(self, tensors: dict[str, torch.Tensor], js: dict) -> None:
        if js.get("n_params") != len(self.params):
            raise ValueError(
                f"optimizer state has {js.get('n_params')} parameters, expected {len(self.params)}"
            )
        for i, p in enumerate(self.params):
            for name, buf in (("m", self.m), ("v", self.v)):
                t = tensors.get(f"{name}.{i}")
                if t is None or t.shape != p.shape:
                    raise ValueError(f"optimizer state {name}.{i} is missing or misshapen")
                buf[i].copy_(t)
        self.t = int(js["t"])
        self.param_groups[0].update(lr=js["lr"], betas=tuple(js["betas"]), eps=js["eps"])
