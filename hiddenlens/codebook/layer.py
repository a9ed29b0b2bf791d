"""Codebook bottleneck layer.

Implements the layer of "Codebook Features: Sparse and Discrete Interpretability for Neural
Networks" (Tamkin, Taufeeque & Goodman, 2023; reference code taufeeque9/codebook-features):
an activation is replaced by the *sum of its k most similar codes* from a learned codebook.
Gradients reach the codes directly (they are the output) and the layers upstream through
the straight-through estimator. Auxiliary losses follow the reference: ``"plain"`` (none),
``"autoencoder"`` (MSE between the codebook output and its input, the reference's default)
and ``"vqvae"`` (codebook term plus commitment term weighted by beta, van den Oord et al.
2017). Codes can be initialised by k-means on cached activations and dead codes can be
re-seeded from recent activations.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

SIMILARITIES = ("cosine", "inner", "euclidean")
LOSSES = ("plain", "autoencoder", "vqvae")


@dataclass
class CodebookConfig:
    """Shape and training options of one codebook.

    d: width of the activation the codebook replaces.
    n_codes: number of code vectors.
    k: number of codes summed per activation (1 <= k <= n_codes).
    similarity: how codes are ranked: "cosine" (reference default for language models),
        "inner" product or negative "euclidean" distance.
    loss: auxiliary loss: "plain", "autoencoder" or "vqvae".
    beta: commitment weight of the VQ-VAE loss (reference: 0.25).
    """

    d: int
    n_codes: int
    k: int = 1
    similarity: str = "cosine"
    loss: str = "autoencoder"
    beta: float = 0.25

    def __post_init__(self) -> None:
        for name in ("d", "n_codes", "k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.k > self.n_codes:
            raise ValueError(f"k={self.k} must be <= n_codes={self.n_codes}")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity={self.similarity!r}; accepted: {SIMILARITIES}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss={self.loss!r}; accepted: {LOSSES}")
        if not (self.beta >= 0.0):
            raise ValueError(f"beta must be >= 0, got {self.beta!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def topk_codes(
    x: torch.Tensor, codes: torch.Tensor, k: int, similarity: str = "cosine"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and scores of the k codes most similar to each row.

    x: [n, d]; codes: [n_codes, d] -> (indices [n, k] long, scores [n, k]), best first.
    """
    if similarity == "cosine":
        # A row's norm does not change the ranking of its codes: rank by x . c/|c| and divide
        # only the k winning scores by |x|, saving a pass over the [n, n_codes] score matrix.
        top = (x @ F.normalize(codes, dim=-1).T).topk(k, dim=-1)
        return top.indices, top.values / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    if similarity == "inner":
        scores = x @ codes.T
    elif similarity == "euclidean":
        # -||x - c||^2 up to the row constant ||x||^2, which does not change the ranking.
        scores = 2.0 * (x @ codes.T) - (codes * codes).sum(-1)
    else:
        raise ValueError(f"similarity={similarity!r}; accepted: {SIMILARITIES}")
    top = scores.topk(k, dim=-1)
    return top.indices, top.values


class CodebookLayer(nn.Module):
    """Replace activations [..., d] by the sum of their top-k codes (straight-through).

    After each forward pass ``last_codes`` holds the selected code ids [..., k] (detached) and
    ``last_loss`` the auxiliary loss (a scalar tensor, 0 for ``loss="plain"``). ``usage``
    counts selections since the last dead-code replacement.
    """

    def __init__(
        self,
        d: int,
        n_codes: int,
        k: int = 1,
        similarity: str = "cosine",
        loss: str = "autoencoder",
        beta: float = 0.25,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.config = CodebookConfig(d, n_codes, k, similarity, loss, beta)
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        self.codes = nn.Parameter(torch.randn(n_codes, d, generator=gen) / d**0.5)
        self.register_buffer("usage", torch.zeros(n_codes, dtype=torch.long), persistent=False)
        self.last_codes: torch.Tensor | None = None
        self.last_loss: torch.Tensor = torch.zeros(())
        self.last_input: torch.Tensor | None = None  # latest rows [n, d], for dead codes
        self.forced: list[int] | None = None
        self.forced_positions = None
        self.enabled = True

    # Convenience views of the config.
    @property
    def d(self) -> int:
        return self.config.d

    @property
    def n_codes(self) -> int:
        return self.config.n_codes

    @property
    def k(self) -> int:
        return self.config.k

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Code ids [..., k] selected for activations [..., d] (no gradient)."""
        self._check(x)
        with torch.no_grad():
            idx, _ = topk_codes(
                x.reshape(-1, self.d).to(self.codes.dtype),
                self.codes,
                self.k,
                self.config.similarity,
            )
        return idx.reshape(*x.shape[:-1], self.k)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """Sum of the codes [..., d] for ids [..., k]."""
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.n_codes):
            raise ValueError(f"code ids must be in [0, {self.n_codes}), got {ids.unique()}")
        return self.codes[ids].sum(dim=-2)

    def _check(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"CodebookLayer expects a torch.Tensor, got {type(x).__name__}")
        if x.shape[-1] != self.d:
            raise ValueError(
                f"activation has last dimension {x.shape[-1]} but the codebook has d={self.d}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        self._check(x)
        flat = x.reshape(-1, self.d)
        self.last_input = flat.detach()
        idx, _ = topk_codes(
            flat.detach().to(self.codes.dtype), self.codes.detach(), self.k, self.config.similarity
        )
        if self.forced is None:
            q = F.embedding_bag(idx, self.codes, mode="sum")  # [n, d]
            self.usage += torch.bincount(idx.reshape(-1), minlength=self.n_codes)
        else:
            idx = self._apply_forcing(idx, x.shape)
            # Rows of different code counts are padded with -1, which weigh nothing.
            weights = (idx >= 0).to(self.codes.dtype)
            q = F.embedding_bag(
                idx.clamp_min(0), self.codes, mode="sum", per_sample_weights=weights
            )
        q = q.to(x.dtype)
        self.last_loss = self._aux_loss(flat, q)
        self.last_codes = idx.reshape(*x.shape[:-1], idx.shape[-1])
        # Straight-through: value of q, gradient of identity for x, true gradient for codes.
        out = q + (flat - flat.detach())
        return out.reshape(x.shape)

    def _aux_loss(self, x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        loss = self.config.loss
        if loss == "plain":
            return torch.zeros((), dtype=q.dtype, device=q.device)
        if loss == "autoencoder":
            return F.mse_loss(q, x)
        # VQ-VAE: move codes toward activations, commit activations to their codes.
        return F.mse_loss(q, x.detach()) + self.config.beta * F.mse_loss(x, q.detach())

    def _apply_forcing(self, idx: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        if self.forced is None:
            return idx
        forced = torch.as_tensor(self.forced, dtype=idx.dtype, device=idx.device)
        # Forcing replaces the whole set of k codes: the output is the sum of the forced codes.
        new = forced.expand(idx.shape[0], -1)
        if self.forced_positions is None:
            return new.contiguous()
        if len(shape) < 3:
            raise ValueError(
                f"positions need activations shaped [batch, seq, d], got {tuple(shape)}"
            )
        seq = shape[-2]
        mask = torch.zeros(seq, dtype=torch.bool, device=idx.device)
        mask[self.forced_positions] = True
        mask = mask.expand(*shape[:-1]).reshape(-1)
        # Rows keep their own code count (k) unless forced; pad forced sets to a common width.
        width = max(idx.shape[1], new.shape[1])
        out = torch.full((idx.shape[0], width), -1, dtype=idx.dtype, device=idx.device)
        out[~mask, : idx.shape[1]] = idx[~mask]
        out[mask, : new.shape[1]] = new[mask]
        return out

    # ----------------------------------------------------------------- initialisation
    @torch.no_grad()
    def init_kmeans(
        self,
        acts: torch.Tensor,
        *,
        n_iter: int = 100,
        tol: float = 1e-4,
        seed: int = 0,
        batch_size: int = 16384,
    ) -> CodebookLayer:
        """Set the codes to k-means centroids of ``acts`` [n, d] (assignment by the layer's
        similarity, ``n_iter`` iterations at most, see ``kmeans``), scaled by 1/k so that a
        sum of k codes has the activations' scale."""
        from hiddenlens.codebook.kmeans import kmeans

        acts = torch.as_tensor(acts, dtype=self.codes.dtype).reshape(-1, self.d)
        centroids, _ = kmeans(
            acts,
            self.n_codes,
            n_iter=n_iter,
            tol=tol,
            seed=seed,
            similarity=self.config.similarity,
            batch_size=batch_size,
        )
        self.codes.copy_(centroids / self.k)
        self.usage.zero_()
        return self

    @torch.no_grad()
    def replace_dead_codes(self, acts: torch.Tensor, *, min_usage: int = 1, seed: int = 0) -> int:
        """Re-seed codes used fewer than ``min_usage`` times since the last call with random
        rows of ``acts`` [n, d] (divided by k, plus small noise); returns how many."""
        dead = (self.usage < min_usage).nonzero().flatten()
        self.usage.zero_()
        if dead.numel() == 0:
            return 0
        acts = torch.as_tensor(acts, dtype=self.codes.dtype).reshape(-1, self.d)
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randint(0, acts.shape[0], (dead.numel(),), generator=gen)
        new = acts[rows].to(self.codes.device) / self.k
        noise = torch.randn(new.shape, generator=gen).to(new) * 0.01 * new.std()
        self.codes[dead] = new + noise
        logger.debug("replaced %d dead codes", dead.numel())
        return int(dead.numel())

    def extra_repr(self) -> str:
        c = self.config
        return f"d={c.d}, n_codes={c.n_codes}, k={c.k}, similarity={c.similarity}, loss={c.loss}"
