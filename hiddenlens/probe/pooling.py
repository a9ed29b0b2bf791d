"""Pooling token activations into one vector per sequence, for sequence-level probes.

Methods: ``token`` (no pooling: every kept token is a row), ``mean``, ``first`` (the CLS
position), ``last`` (the last kept token) and ``moment`` (Tao et al. 2023, "Tuning
Pre-trained Model via Moment Probing": the first moment plus second-order statistics of the
token features).  As in that paper's multi-head covariance, the d x d covariance is taken
within ``heads`` channel groups (d/heads channels each) to keep the feature count
manageable: moment features = [mean (d), upper triangles of the per-group covariances].
"""

from __future__ import annotations

import numpy as np
import torch

METHODS = ("token", "mean", "first", "last", "moment")


def _as_tensor(x) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, True
    return torch.as_tensor(np.asarray(x)), False


def moment_features(Z: torch.Tensor, heads: int = 16) -> torch.Tensor:
    """[T, d] tokens of one sequence -> [d + heads * g (g + 1) / 2] with g = d / heads."""
    T, d = Z.shape
    if d % heads:
        raise ValueError(f"heads={heads} must divide the feature dimension {d}")
    g = d // heads
    mu = Z.mean(0)
    Zc = (Z - mu).view(T, heads, g)
    cov = torch.einsum("thi,thj->hij", Zc, Zc) / T  # [heads, g, g]
    iu = torch.triu_indices(g, g)
    return torch.cat([mu, cov[:, iu[0], iu[1]].reshape(-1)])


def pool(acts, mask=None, *, method: str = "mean", heads: int = 16):
    """Pool activations [B, T, d] with an optional mask [B, T] (1 = real token).

    Returns [B, d'] (``token``: [n_kept, d]); a numpy input gives numpy output.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    A, is_torch = _as_tensor(acts)
    if A.ndim != 3:
        raise ValueError(f"acts must be [batch, seq, d], got shape {tuple(A.shape)}")
    B, T, d = A.shape
    M = torch.ones(B, T, dtype=torch.bool) if mask is None else _as_tensor(mask)[0].bool()
    if M.shape != (B, T):
        raise ValueError(f"mask shape {tuple(M.shape)} does not match acts {(B, T)}")
    lengths = M.sum(1)
    if (lengths == 0).any():
        raise ValueError("a sequence has no unmasked tokens")
    A = A.float()
    if method == "token":
        out = A[M]
    elif method == "mean":
        out = (A * M[..., None]).sum(1) / lengths[:, None]
    elif method == "first":
        out = A[torch.arange(B), M.float().argmax(1)]
    elif method == "last":
        last = T - 1 - M.flip(1).float().argmax(1)
        out = A[torch.arange(B), last]
    else:
        out = torch.stack([moment_features(A[b][M[b]], heads) for b in range(B)])
    return out if is_torch else out.numpy()


def pool_rows(X, sample_idx, *, method: str = "mean", position=None, heads: int = 16):
    """Pool store rows (one per token) into one row per sample.

    X [n, d]; sample_idx [n] (``store.meta["sample_idx"]``); position [n] orders tokens
    within a sample (for first / last; row order is used when omitted).
    Returns (samples [m] sorted, pooled [m, d']).
    """
    if method not in METHODS or method == "token":
        raise ValueError(f"method must be one of {METHODS[1:]}, got {method!r}")
    X = np.asarray(X, dtype=np.float32)
    sample_idx = np.asarray(sample_idx)
    if len(sample_idx) != len(X):
        raise ValueError(f"sample_idx has {len(sample_idx)} entries for {len(X)} rows")
    pos = np.arange(len(X)) if position is None else np.asarray(position)
    order = np.lexsort((pos, sample_idx))
    Xs, ss = X[order], sample_idx[order]
    samples, starts = np.unique(ss, return_index=True)
    ends = np.append(starts[1:], len(Xs))
    if method == "mean":
        out = np.add.reduceat(Xs, starts, axis=0) / (ends - starts)[:, None]
    elif method == "first":
        out = Xs[starts]
    elif method == "last":
        out = Xs[ends - 1]
    else:
        T = torch.from_numpy(Xs)
        out = torch.stack([moment_features(T[a:b], heads) for a, b in zip(starts, ends)]).numpy()
    return samples, out
