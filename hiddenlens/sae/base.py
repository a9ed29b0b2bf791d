"""Base class and registry for sparse autoencoders.

Weights follow the SAELens layout (``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae], ``W_dec``
[d_sae, d_in], ``b_dec`` [d_in]); the encoder is initialised as the decoder's transpose
and decoder rows at unit norm (Gao et al. 2024, "Scaling and evaluating sparse
autoencoders"; Conerly et al. 2024, Anthropic April update). One subclass per file,
registered with :func:`hiddenlens.sae.registry.register_architecture` and carrying its own
facts (SAELens name, TopK family, store hooks), as in SAELens.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hiddenlens.sae import registry
from hiddenlens.sae.config import SAEConfig
from hiddenlens.sae.sparse import Active

#: The decorator every architecture module uses (the registry's public one).
register = registry.register_architecture


def build_sae(cfg: SAEConfig, *, seed: int | None = None) -> BaseSAE:
    """Instantiate the registered class for ``cfg.architecture`` with fresh weights."""
    if seed is not None:
        gen = torch.Generator().manual_seed(seed)
    else:
        gen = None
    return registry.get(cfg.architecture)(cfg, generator=gen)


@dataclass
class SAEOutput:
    """Result of ``sae(x)``.

    recon: [n, d_in]; losses: named scalar loss terms, ``losses["loss"]`` is their
    weighted sum; fired: [d_sae] bool, latents active in this batch; l0: mean active
    latents per row. The latents are stored densely (``latents_dense``) or as active
    pairs (``active`` + ``values``); ``latents`` densifies on demand.
    """

    recon: Tensor
    losses: dict[str, Tensor]
    fired: Tensor
    l0: Tensor
    latents_dense: Tensor | None = None
    active: Active | None = None
    values: Tensor | None = None
    extra: dict[str, Tensor] = field(default_factory=dict)

    @property
    def latents(self) -> Tensor:
        if self.latents_dense is not None:
            return self.latents_dense
        assert self.active is not None and self.values is not None
        return self.active.to_dense(self.values.detach())


class BaseSAE(nn.Module, metaclass=abc.ABCMeta):
    """Shared parameters and plumbing; subclasses define ``encode`` and ``forward``.

    Class facts read by the registry (override in subclasses): ``saelens_architecture``
    (required), ``inference_architecture`` (None: itself), ``topk_family``,
    ``store_hooks``.
    """

    architecture = "base"
    inference_architecture: str | None = None
    topk_family = False
    store_hooks: tuple[str, ...] = ("",)
    #: the encoder's default start as a multiple of the decoder's transpose (the trainer
    #: applies it unless ``TrainConfig.encoder_init_scale`` is set); 1 is the tied start
    encoder_start = 1.0
    #: the training encoder matmul may choose latents in ``selection_dtype`` (bf16)
    low_precision_selection = False
    selection_dtype = torch.float32

    #: What the second store hook of ``training_hooks`` is: None (there is none), "grad"
    #: (d loss / d activation, g-SAE) or "target" (the rows to reconstruct, transcoders).
    pair_role: str | None = None

    @classmethod
    def check_config(cls, cfg: SAEConfig) -> None:
        """Raise ValueError for an ``SAEConfig`` this architecture cannot use (override)."""

    @classmethod
    def training_hooks(cls, cfg: SAEConfig, hook: str) -> list[str]:
        """The store hooks training on ``hook`` reads, ``hook`` first."""
        return [hook + suffix for suffix in cls.store_hooks]

    def __init__(self, cfg: SAEConfig, *, generator: torch.Generator | None = None):
        super().__init__()
        if cfg.architecture != self.architecture:
            raise ValueError(
                f"{type(self).__name__} needs architecture={self.architecture!r}, "
                f"got {cfg.architecture!r}"
            )
        self.cfg = cfg
        w_dec = torch.empty(cfg.d_sae, cfg.d_in)
        bound = (6.0 / cfg.d_in) ** 0.5
        w_dec.uniform_(-bound, bound, generator=generator)
        w_dec /= w_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.t().clone().contiguous())
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in))

    # -- shared helpers -------------------------------------------------------------
    def _check_input(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor of shape [..., {self.cfg.d_in}], got {x!r}")
        if x.shape[-1] != self.cfg.d_in:
            raise ValueError(
                f"input has last dimension {x.shape[-1]}, this SAE expects d_in={self.cfg.d_in}"
            )
        # rows follow the SAE: a model on one device can be spliced with an SAE on another
        return x.to(device=self.W_dec.device, dtype=self.W_dec.dtype)

    def center(self, x: Tensor) -> Tensor:
        return x - self.b_dec if self.cfg.apply_b_dec_to_input else x

    def pre_acts(self, x: Tensor) -> Tensor:
        """Encoder pre-activations [n, d_sae]."""
        x_c = self.center(x)
        if x_c.dim() == 2:  # fused bias: one pass over the [n, d_sae] output
            return torch.addmm(self.b_enc, x_c, self.W_enc)
        return x_c @ self.W_enc + self.b_enc

    def decode(self, z: Tensor) -> Tensor:
        """Reconstruction [..., d_in] from dense latents [..., d_sae]."""
        if z.shape[-1] != self.cfg.d_sae:
            raise ValueError(f"latents have width {z.shape[-1]}, expected d_sae={self.cfg.d_sae}")
        return z @ self.W_dec + self.b_dec

    @abc.abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """Latents [..., d_sae] of inputs [..., d_in]; each architecture defines it."""

    def reconstruct(self, x: Tensor) -> Tensor:
        """decode(encode(x)) for any leading shape; used when splicing into a model."""
        shape = x.shape
        flat = self._check_input(x).reshape(-1, shape[-1])
        out = self.decode(self.encode(flat)).reshape(shape)
        return out.to(device=x.device, dtype=x.dtype)  # back where the model runs

    def _mse(self, recon: Tensor, x: Tensor) -> Tensor:
        # Sum over features, mean over rows (SAELens/Gao et al. convention); one fused
        # kernel each way instead of sub, pow, sum, mean (and their backward passes). The
        # mean times d_in, not the batch sum over n: a float16 batch sum overflows (65504).
        return F.mse_loss(recon, x) * x.shape[-1]

    def _dense_output(self, x: Tensor, z: Tensor, losses: dict[str, Tensor]) -> SAEOutput:
        recon = self.decode(z)
        losses = {"mse": self._mse(recon, x), **losses}
        losses["loss"] = sum(losses.values())
        fired = (z > 0).any(0)
        l0 = (z > 0).float().sum(-1).mean()
        return SAEOutput(recon=recon, losses=losses, fired=fired, l0=l0, latents_dense=z)

    # -- training hooks (overridden where an architecture needs them) ---------------
    def sparsity_params(self) -> dict[str, Tensor]:
        """Weights to export in SAELens format (training-only tensors excluded)."""
        return {n: p.detach() for n, p in self.named_parameters()}

    def load_exported(self, tensors: dict[str, Tensor]) -> None:
        """Inverse of ``sparsity_params``: set weights from exported tensors."""
        own = dict(self.named_parameters())
        missing = set(own) - set(tensors)
        if missing:
            raise ValueError(f"weights file lacks tensors {sorted(missing)}")
        with torch.no_grad():
            for n, p in own.items():
                t = tensors[n]
                if tuple(t.shape) != tuple(p.shape):
                    raise ValueError(
                        f"tensor {n!r} has shape {tuple(t.shape)}, expected {tuple(p.shape)}"
                    )
                p.copy_(t.to(p.dtype))

    @torch.no_grad()
    def fold_scale(self, scale: float) -> None:
        """Fold an input scale s (the SAE was trained on s*x) into the weights."""
        self.W_enc.mul_(scale)
        self.W_dec.div_(scale)
        self.b_dec.div_(scale)

    @torch.no_grad()
    def normalize_decoder(self) -> None:
        self.W_dec /= self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def project_decoder_grad(self) -> None:
        """Remove the gradient component parallel to each (unit) decoder row."""
        g = self.W_dec.grad
        if g is None:
            return
        par = torch.einsum("ld,ld->l", g, self.W_dec).unsqueeze(-1)  # no [d_sae, d_in] temporary
        g.addcmul_(par, self.W_dec, value=-1.0)

    def save(self, path, *, sparsity: Tensor | None = None) -> None:
        """Write ``cfg.json`` + ``sae_weights.safetensors`` (+ ``sparsity.safetensors``)."""
        from hiddenlens.sae.io import save_sae

        save_sae(self, path, sparsity=sparsity)
