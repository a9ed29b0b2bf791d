"""The activation-source contract: the one way every analyzer reads activations.

An :class:`ActivationSource` is a table of rows: for each hook point a ``[n, d]`` matrix,
all hooks row-aligned, plus per-row metadata columns (``sample_idx``, ``position``,
``token_id``, labels) and per-hook statistics. Two implementations exist: the on-disk
:class:`~hiddenlens.store.ActivationStore` and the in-memory
:class:`~hiddenlens.store.memory.MemorySource`; :func:`as_source` adapts everything an
analyzer accepts (a store, a ``(store, hook)`` pair, a dict of arrays or tensors, one array
or tensor) to one of them. This is the role TransformerLens' ``ActivationCache`` plays for
its analyses, kept small: no model, no caching policy, only rows.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import numpy as np

#: Hook name :func:`as_source` gives a single array or tensor.
DEFAULT_HOOK = "activations"
#: Suffix of the gradient entries a store may hold next to a hook (``"<hook>#grad"``).
GRAD_SUFFIX = "#grad"


class ActivationSource(Protocol):
    """Row-aligned activations of one or more hook points.

    hook_points: the hook names; ``d(hook)``: row width; ``len(source)``: the row count
    (shared by every hook); ``rows(hook, start, stop)``: rows ``[start, stop)`` as a numpy
    array ``[n, d]``; ``batches(hooks, batch_size, *, shuffle, seed, rank, world_size,
    drop_last, block_rows, interleave, start_batch)``: float32 tensors ``[b, d]`` (a tuple
    for a list of hooks) with the semantics of :meth:`ActivationStore.batches`; ``meta``:
    per-row columns ``name -> [n]``; ``stats(hook)``: ``{"mean": [d], "var": [d] (ddof=0),
    "mean_norm": float, "count": int}``.
    """

    @property
    def hook_points(self) -> list[str]: ...

    def d(self, hook: str) -> int: ...

    def __len__(self) -> int: ...

    def rows(self, hook: str, start: int = 0, stop: int | None = None) -> np.ndarray: ...

    def batches(self, hooks: str | list[str], batch_size: int, **kwargs: Any) -> Iterator: ...

    @property
    def meta(self) -> dict[str, np.ndarray]: ...

    def stats(self, hook: str) -> dict[str, Any]: ...


class SourceView:
    """A source restricted to some of its hooks and/or with extra metadata columns.

    What :func:`as_source` returns for a ``(store, hook)`` pair or for a source given with
    ``meta``; every read is delegated to ``base``.
    """

    def __init__(self, base: ActivationSource, hooks=None, meta=None):
        self.base = base
        available = list(base.hook_points)
        names = available if hooks is None else list(hooks)
        unknown = [h for h in names if h not in available]
        if unknown:
            raise ValueError(f"hook points {unknown} are not in the source; available: {available}")
        self._hooks = names
        self._extra = check_meta(meta, len(base))

    @property
    def hook_points(self) -> list[str]:
        return list(self._hooks)

    def _check(self, hook: str) -> str:
        if hook not in self._hooks:
            raise ValueError(f"hook {hook!r} is not in this source; available: {self._hooks}")
        return hook

    def d(self, hook: str) -> int:
        return self.base.d(self._check(hook))

    def __len__(self) -> int:
        return len(self.base)

    def __repr__(self) -> str:
        return f"SourceView({self.base!r}, hooks={self._hooks}, extra_meta={list(self._extra)})"

    def rows(self, hook: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        return self.base.rows(self._check(hook), start, stop)

    def batches(self, hooks: str | list[str], batch_size: int, **kwargs: Any) -> Iterator:
        for h in [hooks] if isinstance(hooks, str) else list(hooks):
            self._check(h)
        return self.base.batches(hooks, batch_size, **kwargs)

    @property
    def meta(self) -> dict[str, np.ndarray]:
        return {**self.base.meta, **self._extra}

    def stats(self, hook: str) -> dict[str, Any]:
        return self.base.stats(self._check(hook))


_MEMBERS = ("hook_points", "d", "__len__", "rows", "batches", "meta", "stats")


def is_source(x: Any) -> bool:
    """True when ``x`` has every member of :class:`ActivationSource`.

    Checked statically (``inspect.getattr_static``), so a store's ``meta`` is not loaded.
    """
    missing = object()
    return all(inspect.getattr_static(x, name, missing) is not missing for name in _MEMBERS)


def as_source(x: Any, meta: Mapping[str, Any] | None = None) -> ActivationSource:
    """Adapt ``x`` to an :class:`ActivationSource`.

    x: an ActivationSource (an ``ActivationStore``, a ``MemorySource``, ...) — returned as
    is unless ``meta`` is given; a ``(source, hook)`` pair — a view of that one hook; a dict
    ``hook -> array/tensor [n, d]``; or one array/tensor ``[n, d]`` (hook name
    ``"activations"``). meta: extra per-row columns ``name -> [n]`` (they override
    same-named columns of a store).
    """
    from hiddenlens.store.memory import MemorySource

    if isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], str):
        if not is_source(x[0]):
            raise TypeError(
                f"a (source, hook) pair needs an ActivationStore or other source first, "
                f"got ({type(x[0]).__name__}, {x[1]!r})"
            )
        return SourceView(x[0], [x[1]], meta)
    if is_source(x):
        return x if meta is None else SourceView(x, None, meta)
    if isinstance(x, Mapping):
        return MemorySource(x, meta)
    if hasattr(x, "shape") and hasattr(x, "__getitem__"):
        return MemorySource({DEFAULT_HOOK: x}, meta)
    raise TypeError(
        f"cannot read activations from {type(x).__name__}; accepted: an ActivationStore (or "
        "other ActivationSource), a (store, hook) pair, a dict hook -> array/tensor [n, d], "
        "or one array/tensor [n, d]"
    )


def check_meta(meta: Mapping[str, Any] | None, n: int) -> dict[str, np.ndarray]:
    """Metadata columns as 1-D numpy arrays of length ``n`` (tensors are converted)."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a dict name -> [n] column, got {type(meta).__name__}")
    out = {}
    for name, col in meta.items():
        if not isinstance(name, str):
            raise TypeError(f"meta column names must be strings, got {name!r}")
        arr = np.asarray(col.detach().cpu() if hasattr(col, "detach") else col)
        if arr.ndim != 1 or len(arr) != n:
            raise ValueError(
                f"meta column {name!r} must be 1-D with one entry per row ({n}), "
                f"got shape {arr.shape}"
            )
        out[name] = arr
    return out


def select_hooks(source: ActivationSource, hooks: str | list[str] | None = None) -> list[str]:
    """The hooks to analyse: ``hooks`` checked against the source, or every non-gradient hook."""
    available = list(source.hook_points)
    if hooks is None:
        names = [h for h in available if not h.endswith(GRAD_SUFFIX)]
    else:
        names = [hooks] if isinstance(hooks, str) else list(hooks)
        missing = [h for h in names if h not in available]
        if missing:
            raise ValueError(f"unknown hook points {missing}; available: {available}")
    if not names:
        raise ValueError(f"no hook points to analyse; the source has {available}")
    return names


def single_hook(source: ActivationSource, hook: str | None = None) -> str:
    """``hook`` checked against the source, or its only non-gradient hook."""
    names = select_hooks(source, hook)
    if len(names) != 1:
        raise ValueError(f"the source has several hook points {names}; name one")
    return names[0]


def meta_column(source: ActivationSource, name: str) -> np.ndarray:
    """The metadata column ``name`` (e.g. labels); an error lists the columns there are."""
    meta = source.meta
    if name not in meta:
        raise ValueError(f"label column {name!r} not found; the source's meta has {sorted(meta)}")
    return np.asarray(meta[name])


def iter_rows(
    source: ActivationSource, hook: str, chunk_rows: int, stop: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows ``[b, d]``) over rows ``[0, stop)`` in order, ``chunk_rows`` at a time."""
    if not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive int, got {chunk_rows!r}")
    n = len(source) if stop is None else min(int(stop), len(source))
    for start in range(0, n, int(chunk_rows)):
        yield start, source.rows(hook, start, min(start + int(chunk_rows), n))


def read_hooks(
    source: Any, hooks: str | list[str] | None = None, rows=None
) -> dict[str, np.ndarray]:
    """hook -> all its rows ``[n, d]`` (or the subsample ``rows``) as a float array in memory.

    source: anything :func:`as_source` accepts; hooks: names, or None for every
    non-gradient hook. Integer rows become float32; NaN / inf are an error naming the hook.
    """
    src = as_source(source)
    out: dict[str, np.ndarray] = {}
    for h in select_hooks(src, hooks):
        X = np.asarray(src.rows(h))
        if rows is not None:
            X = X[np.asarray(rows)]
        if not np.issubdtype(X.dtype, np.floating):
            X = X.astype(np.float32)
        if not np.isfinite(X).all():
            raise ValueError(f"activations of {h!r} contain NaN or inf")
        out[h] = X
    return out


def row_labels(source: ActivationSource, labels: Any, rows=None) -> np.ndarray:
    """Labels aligned with the (sub-sampled) rows; a string names a ``meta`` column."""
    n = len(source) if rows is None else len(np.arange(len(source))[np.asarray(rows)])
    if isinstance(labels, str):
        labels = meta_column(source, labels)
        if rows is not None:
            labels = labels[np.asarray(rows)]
    labels = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    if len(labels) != n:
        raise ValueError(
            f"labels have {len(labels)} entries but there are {n} activation rows; "
            "pass labels aligned with the rows (or with rows=... already applied)"
        )
    return labels


def sized_source(x: Any, hook: str, d: int, who: str = "the SAE has d_in") -> ActivationSource:
    """``as_source(x)``, checked to hold ``hook`` with rows of width ``d``."""
    src = as_source(x)
    got = int(src.d(hook))
    if got != d:
        raise ValueError(f"hook {hook!r} has d={got} in the store but {who}={d}")
    return src
