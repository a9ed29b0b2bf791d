"""Top-scoring rows of an activation source: the one "top-activating examples" search.

Feature dashboards (Bricken et al. 2023, "Towards Monosemanticity"), dataset examples
next to activation maximisation (Olah et al. 2017, "Feature Visualization") and feature
cards all show the rows where a unit — a neuron, an SAE latent, a code — is largest. They
all use :func:`top_rows`: a streaming pass over the rows in order, keeping the ``k`` best
per score column (memory: ``k`` per column plus one chunk), best first, ties broken by
the earlier row; :func:`best_k` is that ordering for scores already in memory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hiddenlens.store.source import as_source, iter_rows

DEFAULT_CHUNK_ROWS = 16384


@dataclass
class TopRows:
    """The best rows per score column, best first.

    rows: int64 row indices ``[k]`` (1-D scores) or ``[m, k]`` (``m`` score columns);
    values: float64 scores, same shape; meta: the source's metadata columns at those rows,
    same shape. Fewer than ``k`` when the source has fewer rows.
    """

    rows: np.ndarray
    values: np.ndarray
    meta: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict[str, np.ndarray]:
        """``{"row", "value", <meta columns>}``."""
        return {"row": self.rows, "value": self.values, **self.meta}


def best_k(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest ``values`` [n], best first, ties by position."""
    return np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")[:k]


def _scores(out, n: int) -> np.ndarray:
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    s = np.asarray(out, dtype=np.float64)
    if s.ndim not in (1, 2) or s.shape[0] != n:
        raise ValueError(
            f"score_fn must return [b] or [b, m] scores for a chunk of {n} rows, "
            f"got shape {s.shape}"
        )
    return s


def top_rows(
    source,
    hook: str,
    score_fn: Callable,
    k: int,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    stop: int | None = None,
) -> TopRows:
    """The ``k`` rows of ``hook`` (among rows ``[0, stop)``) with the highest scores.

    source: anything :func:`as_source` accepts; score_fn: rows ``[b, d]`` (numpy, in the
    source's dtype) -> scores ``[b]`` or ``[b, m]`` (numpy or torch), e.g.
    ``lambda x: x[:, 3]`` or an SAE's latents. NaN scores rank last.
    """
    source = as_source(source)
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    best_v = best_r = None
    one_d = True
    for start, x in iter_rows(source, hook, chunk_rows, stop):
        s = _scores(score_fn(x), len(x))
        one_d = s.ndim == 1
        s = s.reshape(len(x), -1).T  # [m, b]
        rows = np.broadcast_to(np.arange(start, start + len(x)), s.shape)
        if best_v is None:
            best_v, best_r = s[:, :0], rows[:, :0]
        v = np.concatenate([best_v, s], 1)
        r = np.concatenate([best_r, rows], 1)
        # best first; ties (and NaN, mapped to -inf) by the earlier row: stable over r order
        keep = np.argsort(-np.nan_to_num(v, nan=-np.inf), axis=1, kind="stable")[:, :k]
        best_v, best_r = np.take_along_axis(v, keep, 1), np.take_along_axis(r, keep, 1)
    if best_v is None:
        raise ValueError(f"the source has no rows for {hook!r}")
    best_r = best_r.astype(np.int64)
    meta = {name: np.asarray(col)[best_r] for name, col in source.meta.items()}
    if one_d:
        best_v, best_r = best_v[0], best_r[0]
        meta = {name: col[0] for name, col in meta.items()}
    return TopRows(best_r, best_v, meta)
