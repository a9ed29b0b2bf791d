"""Transcoders and skip transcoders: encode a component's input, decode its output.

Dunefsky, Chlenski & Nanda 2024, "Transcoders Find Interpretable LLM Feature Circuits";
Paulo, Shabalin & Belrose 2025, "Transcoders Beat Sparse Autoencoders for
Interpretability" (skip transcoders). A transcoder reads the rows of an input hook (e.g. an
MLP's ``:input``) and reconstructs the rows of an output hook (the MLP's output) through a
sparse bottleneck: y_hat = z W_dec + b_dec (+ x W_skip^T for a skip transcoder), with
z = act(x W_enc + b_enc); the input is never centred (b_dec lives in the output space).
W_dec is [d_sae, d_out], W_skip [d_out, d_in] (SAELens's layout).

* ``transcoder`` / ``skip_transcoder``: ReLU latents with the decoder-norm-weighted L1
  penalty; SAELens's ``transcoder`` / ``skip_transcoder`` both ways.
* ``topk_transcoder`` / ``topk_skip_transcoder``: TopK latents (+AuxK), trained sparsely;
  what EleutherAI sparsify trains with ``transcode`` (and ``skip_connection``); loaded from
  sparsify directories, saved in the SAELens file layout under these names (SAELens has no
  TopK transcoder to load them as).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hiddenlens.sae.architectures.topk import select_topk, sparse_forward, topk_dense
from hiddenlens.sae.base import BaseSAE, SAEOutput, register


class _Transcoder(BaseSAE):
    """Shared shape and plumbing: d_out-wide decoder, no input centring, optional skip."""

    skip = False
    pair_role = "target"  # training reads cfg.output_hook beside the hook

    def __init__(self, cfg, *, generator=None):
        super().__init__(cfg, generator=generator)
        d_out = cfg.d_out or cfg.d_in
        if d_out != cfg.d_in:  # a fresh d_out-wide decoder, unit rows; encoder as before
            w = torch.empty(cfg.d_sae, d_out)
            bound = (6.0 / d_out) ** 0.5
            w.uniform_(-bound, bound, generator=generator)
            self.W_dec = nn.Parameter(w / w.norm(dim=1, keepdim=True).clamp_min(1e-12))
            self.b_dec = nn.Parameter(torch.zeros(d_out))
        if self.skip:
            self.W_skip = nn.Parameter(torch.zeros(d_out, cfg.d_in))

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.apply_b_dec_to_input:
            raise ValueError(
                f"{cls.architecture} needs apply_b_dec_to_input=False (b_dec is the output "
                "bias of a transcoder)"
            )

    @classmethod
    def training_hooks(cls, cfg, hook: str) -> list[str]:
        if not cfg.output_hook:
            raise ValueError(f"{cls.architecture} needs output_hook, the hook it reconstructs")
        return [hook, cfg.output_hook]

    @property
    def d_out(self) -> int:
        return self.W_dec.shape[1]

    def _skip(self, x: Tensor) -> Tensor | None:
        return x @ self.W_skip.t() if self.skip else None

    def transcode(self, x: Tensor) -> Tensor:
        """Predicted output rows [n, d_out] of input rows [n, d_in]."""
        x = self._check_input(x)
        y = self.decode(self.encode(x))
        return y if not self.skip else y + self._skip(x)

    def reconstruct(self, x: Tensor) -> Tensor:
        """The output activation predicted from input activations of any leading shape."""
        shape = x.shape
        y = self.transcode(x.reshape(-1, shape[-1]))
        return y.reshape(*shape[:-1], self.d_out).to(device=x.device, dtype=x.dtype)

    @torch.no_grad()
    def fold_scales(self, s_in: float, s_out: float) -> None:
        """Trained on (s_in x, s_out y): fold both scales into the weights."""
        self.W_enc.mul_(s_in)
        self.W_dec.div_(s_out)
        self.b_dec.div_(s_out)
        if self.skip:
            self.W_skip.mul_(s_in / s_out)


class _ReluTranscoder(_Transcoder):
    def encode(self, x: Tensor) -> Tensor:
        """Latents [n, d_sae]."""
        return torch.relu(self.pre_acts(self._check_input(x)))

    def forward(self, x: Tensor, *, target: Tensor, coefs=None, **_) -> SAEOutput:
        x = self._check_input(x)
        z = torch.relu(self.pre_acts(x))
        recon = self.decode(z)
        if self.skip:
            recon = recon + self._skip(x)
        l1 = float((coefs or {}).get("l1", 0.0)) * (z * self.W_dec.norm(dim=1)).sum(-1).mean()
        losses = {"mse": self._mse(recon, target), "l1": l1}
        losses["loss"] = losses["mse"] + losses["l1"]
        on = z > 0
        return SAEOutput(recon=recon, losses=losses, fired=on.any(0),
                         l0=on.float().sum(-1).mean(), latents_dense=z)  # fmt: skip


class _TopKTranscoder(_Transcoder):
    topk_family = True
    low_precision_selection = True  # select_topk honours ``selection_dtype``

    def encode(self, x: Tensor) -> Tensor:
        """Latents [n, d_sae]: ReLU of the k largest pre-activations per row."""
        return topk_dense(self.pre_acts(self._check_input(x)), self.cfg.k)

    def forward(self, x: Tensor, *, target: Tensor, coefs=None, dead_mask=None, **_):
        from hiddenlens.sae.architectures.topk import aux_plan

        x = self._check_input(x).detach()
        dead, k_aux, scale = aux_plan(self, coefs, dead_mask)
        with torch.no_grad():
            sel = select_topk(self, x, self.cfg.k, None, dead, k_aux)
        return sparse_forward(self, x, x, sel, coefs, scale, target=target,
                              extra=self._skip(x))  # fmt: skip


@register("transcoder")
class Transcoder(_ReluTranscoder):
    """ReLU transcoder (SAELens ``transcoder``)."""

    saelens_architecture = "transcoder"


@register("skip_transcoder")
class SkipTranscoder(_ReluTranscoder):
    """ReLU transcoder with a linear skip connection (SAELens ``skip_transcoder``)."""

    saelens_architecture = "skip_transcoder"
    skip = True


@register("topk_transcoder")
class TopKTranscoder(_TopKTranscoder):
    """TopK transcoder (sparsify ``transcode=True``)."""

    saelens_architecture = "topk_transcoder"


@register("topk_skip_transcoder")
class TopKSkipTranscoder(_TopKTranscoder):
    """TopK transcoder with a skip connection (sparsify ``transcode``+``skip_connection``)."""

    saelens_architecture = "topk_skip_transcoder"
    skip = True
