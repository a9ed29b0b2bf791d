"""Class-wise streaming statistics for neural-collapse metrics.

Neural collapse (Papyan, Han & Donoho, "Prevalence of neural collapse during the terminal
phase of deep learning training", PNAS 2020) is measured from class means, the global mean
and the within-class covariance Σ_W. All of these are sums over rows, so they can be
accumulated chunk by chunk over a store that does not fit in memory.

The within-class scatter is merged with the pairwise (Chan, Golub & LeVeque 1979) update
instead of raw second moments: after collapse the within-class spread is tiny compared with
the class means, and Σ hhᵀ − n μμᵀ would lose it to cancellation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hiddenlens.store.source import as_source, is_source, iter_rows, meta_column, single_hook

logger = logging.getLogger(__name__)

DEFAULT_CHUNK_ROWS = 65536


@dataclass(frozen=True)
class ClassStats:
    """Sufficient statistics of labelled features (float64).

    classes: [C] label values (sorted); counts: [C]; means: [C, d] class means;
    within_scatter: [d, d] Σ_c Σ_{i∈c} (h_i − μ_c)(h_i − μ_c)ᵀ; class_scatter_trace: [C]
    Σ_{i∈c} ‖h_i − μ_c‖² (for CDNV).
    """

    classes: np.ndarray
    counts: np.ndarray
    means: np.ndarray
    within_scatter: np.ndarray
    class_scatter_trace: np.ndarray

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    @property
    def n_classes(self) -> int:
        return int(self.classes.shape[0])

    @property
    def d(self) -> int:
        return int(self.means.shape[1])

    @property
    def global_mean(self) -> np.ndarray:
        """μ_G, the mean of all rows (Papyan et al.), [d]."""
        return (self.counts[:, None] * self.means).sum(0) / self.n

    @property
    def centred_means(self) -> np.ndarray:
        """M as rows: μ_c − μ_G, [C, d]."""
        return self.means - self.global_mean[None, :]

    @property
    def sigma_w(self) -> np.ndarray:
        """Σ_W = avg_{i,c} (h_ic − μ_c)(h_ic − μ_c)ᵀ, [d, d]."""
        return self.within_scatter / self.n

    @property
    def sigma_b(self) -> np.ndarray:
        """Σ_B = avg_c (μ_c − μ_G)(μ_c − μ_G)ᵀ, [d, d]."""
        m = self.centred_means
        return m.T @ m / self.n_classes

    @property
    def class_var(self) -> np.ndarray:
        """σ²_c = mean_{i∈c} ‖h_i − μ_c‖², [C]."""
        return self.class_scatter_trace / self.counts


class ClassStatsAccumulator:
    """Accumulate :class:`ClassStats` over chunks of (X [n, d], y [n]).

    Classes are discovered as they appear; ``update`` may be called any number of times and
    accumulators over disjoint chunks can be combined with ``merge``.
    """

    def __init__(self) -> None:
        self._count: dict[Any, int] = {}
        self._mean: dict[Any, np.ndarray] = {}
        self._trace: dict[Any, float] = {}
        self._scatter: np.ndarray | None = None
        self._rows_seen = 0

    def update(self, x: Any, y: Any) -> ClassStatsAccumulator:
        x = as_float_matrix(x, offset=self._rows_seen)
        y = as_labels(y, n=x.shape[0])
        if self._scatter is None:
            self._scatter = np.zeros((x.shape[1], x.shape[1]))
        elif x.shape[1] != self._scatter.shape[0]:
            raise ValueError(
                f"feature width changed from {self._scatter.shape[0]} to {x.shape[1]} "
                f"at row {self._rows_seen}; every chunk must have the same d"
            )
        order = np.argsort(y, kind="stable")
        y_sorted = y[order]
        cuts = np.flatnonzero(np.diff(y_sorted)) + 1
        for idx in np.split(order, cuts):
            if idx.size:
                self._add_class(y[idx[0]].item(), x[idx])
        self._rows_seen += x.shape[0]
        return self

    def _add_class(self, c: Any, xc: np.ndarray) -> None:
        nb = xc.shape[0]
        mb = xc.mean(0)
        dev = xc - mb
        scatter_b = dev.T @ dev
        trace_b = float(np.einsum("ij,ij->", dev, dev))
        self._merge_class(c, nb, mb, scatter_b, trace_b)

    def _merge_class(self, c: Any, nb: int, mb: np.ndarray, scat: np.ndarray, tr: float) -> None:
        na = self._count.get(c, 0)
        assert self._scatter is not None
        if na == 0:
            self._count[c], self._mean[c], self._trace[c] = nb, mb, tr
            self._scatter += scat
            return
        n = na + nb
        delta = mb - self._mean[c]
        w = na * nb / n
        # Chan et al.: M2 = M2_a + M2_b + δδᵀ n_a n_b / n
        self._scatter += scat + w * np.outer(delta, delta)
        self._trace[c] += tr + w * float(delta @ delta)
        self._mean[c] = self._mean[c] + delta * (nb / n)
        self._count[c] = n

    def merge(self, other: ClassStatsAccumulator) -> ClassStatsAccumulator:
        """Fold another accumulator (over disjoint rows) into this one."""
        if other._scatter is None:
            return self
        if self._scatter is None:
            self._scatter = np.zeros_like(other._scatter)
        for c, nb in other._count.items():
            self._merge_class(c, nb, other._mean[c], np.zeros_like(self._scatter), 0.0)
            # the other side's own within scatter is added once, below
            self._trace[c] += other._trace[c]
        self._scatter += other._scatter
        self._rows_seen += other._rows_seen
        return self

    def finalize(self) -> ClassStats:
        if not self._count:
            raise ValueError("no rows were accumulated; features were empty")
        classes = np.array(sorted(self._count))
        assert self._scatter is not None
        return ClassStats(
            classes=classes,
            counts=np.array([self._count[c] for c in classes], dtype=np.int64),
            means=np.stack([self._mean[c] for c in classes]),
            within_scatter=self._scatter.copy(),
            class_scatter_trace=np.array([self._trace[c] for c in classes]),
        )


def as_float_matrix(x: Any, *, offset: int = 0) -> np.ndarray:
    """A 2-D float64 array from a numpy array / torch tensor; NaN and inf are rejected."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"features must be numeric, got dtype {x.dtype}")
    if x.ndim == 1:
        raise ValueError(f"features must be 2-D [n, d] (or more, flattened), got shape {x.shape}")
    x = x.reshape(x.shape[0], -1).astype(np.float64, copy=False)
    if not np.isfinite(x).all():
        bad = int(np.flatnonzero(~np.isfinite(x).all(1))[0]) + offset
        raise ValueError(f"features contain NaN or inf (first at row {bad}); finite values only")
    return x


def as_labels(y: Any, *, n: int | None = None) -> np.ndarray:
    """A 1-D integer label array; floats are accepted only when integral."""
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    elif y.dtype.kind == "f":
        if not (np.isfinite(y).all() and np.all(y == np.round(y))):
            raise TypeError("labels must be integer class ids; got non-integral floats")
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise TypeError(f"labels must be integer class ids, got dtype {y.dtype}")
    if n is not None and y.shape[0] != n:
        raise ValueError(
            f"labels are misaligned with features: {y.shape[0]} labels for {n} rows; "
            "pass exactly one label per row"
        )
    return y


def iter_chunks(
    features: Any, labels: Any = None, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (X, y) chunks from any supported source.

    Sources: activations :func:`hiddenlens.store.as_source` reads — an array/tensor
    ``[n, d]`` (``[n, ...]`` is flattened; an ``np.memmap`` is read in slices), a
    ``(store, hook)`` pair, or a store / dict with one non-gradient hook — with ``labels``
    [n] or the name of a ``meta`` column; or an iterable of ``(X, y)`` chunks with
    ``labels=None``.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if _is_activations(features):
        yield from _source_chunks(features, labels, chunk_rows)
    elif isinstance(features, Iterable):
        if labels is not None:
            raise ValueError("labels must be None when features is an iterable of (X, y) chunks")
        for item in features:
            if not (isinstance(item, tuple | list) and len(item) == 2):
                raise TypeError("an iterable source must yield (X, y) pairs")
            yield item[0], item[1]
    else:
        raise TypeError(
            f"unsupported features {type(features).__name__}; accepted: array/tensor [n, d], "
            "(ActivationStore, hook) pair, or an iterable of (X, y) chunks"
        )


def _is_activations(obj: Any) -> bool:
    """Activations for :func:`as_source` (not an iterable of (X, y) chunks)."""
    pair = isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[1], str)
    array = hasattr(obj, "shape") and hasattr(obj, "__getitem__")
    return pair or array or isinstance(obj, Mapping) or is_source(obj)


def _source_chunks(features: Any, labels: Any, chunk_rows: int) -> Iterator:
    shape = getattr(features, "shape", None)
    if shape is not None and len(shape) == 1:
        raise ValueError(f"features must be 2-D [n, d] (or more, flattened), got shape {shape}")
    if shape is not None and len(shape) > 2:  # [n, C, H, W] -> [n, C*H*W], a view
        features = features.reshape(shape[0], -1)
    src = as_source(features)
    hook = single_hook(src)
    if labels is None:
        raise ValueError("labels are required: an array [n] or the name of a meta column")
    y = as_labels(meta_column(src, labels) if isinstance(labels, str) else labels, n=len(src))
    for start, x in iter_rows(src, hook, chunk_rows):
        yield x, y[start : start + x.shape[0]]


def is_reiterable(features: Any) -> bool:
    """True when a second pass over ``features`` sees the same rows (NC4 needs two)."""
    if _is_activations(features):
        return True
    return isinstance(features, Iterable) and iter(features) is not features


def accumulate(features: Any, labels: Any = None, *, chunk_rows: int = DEFAULT_CHUNK_ROWS):
    """One pass over ``features`` -> :class:`ClassStats`."""
    acc = ClassStatsAccumulator()
    for x, y in iter_chunks(features, labels, chunk_rows=chunk_rows):
        acc.update(x, y)
    return acc.finalize()
