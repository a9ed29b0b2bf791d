"""Per-example label columns: numeric values kept as given, strings encoded to int codes once.

A string column is encoded to ``int32`` codes with its ``names`` kept (code ``i`` means
``names[i]``), so a store's ``meta.<label>.npy`` stays numeric and a report can print the
names back. Columns known in full (arrays, dataset columns, JSONL fields) are encoded in
sorted order; columns that arrive with a stream (an ``IterableDataset`` or a DataLoader's
targets) get codes in order of first appearance, which a resumed run re-derives exactly
from the prefix it re-reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _first_bad(values: Sequence[Any], ok) -> int | None:
    return next((i for i, v in enumerate(values) if not ok(v)), None)


def check_values(name: str, values: Any) -> np.ndarray:
    """``values`` as a 1-D array of numbers, bools or strings; a clear error otherwise."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    if arr.ndim != 1:
        raise ValueError(
            f"labels[{name!r}] must be 1-D (one value per sample), got shape {arr.shape}"
        )
    if arr.dtype.kind in "biuf" or arr.dtype.kind == "U":
        return arr
    items = list(arr)
    is_str = [isinstance(v, str) for v in items]
    if any(is_str):
        bad = _first_bad(items, lambda v: isinstance(v, str))
        if bad is not None:
            raise TypeError(
                f"labels[{name!r}][{bad}] is {items[bad]!r} ({type(items[bad]).__name__}) but "
                "other values are strings; a label column holds only strings or only numbers"
            )
        return np.asarray(items, dtype=str)
    bad = _first_bad(items, lambda v: isinstance(v, (bool, int, float, np.number, np.bool_)))
    if bad is not None:
        raise TypeError(
            f"labels[{name!r}][{bad}] is {items[bad]!r} ({type(items[bad]).__name__}); "
            "labels must be numbers, bools or strings"
        )
    return np.asarray(items, dtype=np.float64 if any(isinstance(v, float) for v in items) else None)


class LabelColumn:
    """One label per example. ``names`` is None for numeric labels, else the code table."""

    def __init__(self, name: str, *, names: list[str] | None = None, streamed: bool = False):
        self.name = name
        self.names = names
        self.streamed = streamed
        self._index = {n: i for i, n in enumerate(names)} if names is not None else None
        self.values: np.ndarray | None = None  # [n] encoded, for columns known in full

    @classmethod
    def from_values(cls, name: str, values: Any) -> LabelColumn:
        """A column known in full: strings get sorted codes."""
        arr = check_values(name, values)
        if arr.dtype.kind == "U":
            col = cls(name, names=sorted(set(arr.tolist())))
        else:
            col = cls(name)
        col.values = col.encode(arr)
        return col

    @property
    def is_string(self) -> bool:
        return self.names is not None

    def encode(self, values: Any) -> np.ndarray:
        """Codes for ``values`` (a stream's new strings get the next free code)."""
        arr = check_values(self.name, values)
        if arr.dtype.kind != "U":
            if self.names is not None and len(arr):
                raise TypeError(f"labels[{self.name!r}] mixes strings and numbers across batches")
            if self.streamed and self.names is None and arr.dtype.kind not in "biuf":
                raise TypeError(f"labels[{self.name!r}] has dtype {arr.dtype}")
            return arr
        if self.names is None:
            if not self.streamed:
                raise TypeError(f"labels[{self.name!r}] mixes numbers and strings")
            self.names, self._index = [], {}
        out = np.empty(len(arr), dtype=np.int32)
        for i, v in enumerate(arr.tolist()):
            code = self._index.get(v)
            if code is None:
                if not self.streamed:
                    raise ValueError(f"labels[{self.name!r}] has no code for {v!r}")
                code = self._index[v] = len(self.names)
                self.names.append(v)
            out[i] = code
        return out

    def decode(self, codes: Any) -> np.ndarray:
        """The names of ``codes`` (numeric columns are returned unchanged)."""
        codes = np.asarray(codes)
        if self.names is None:
            return codes
        return np.asarray(self.names, dtype=object)[codes.astype(np.int64)]

    def identity(self) -> Any:
        """What a resumed run must agree on: the code table (a stream's grows as it goes)."""
        if self.streamed:
            return "streamed"
        return list(self.names) if self.names is not None else "numeric"


def label_dict(
    labels: Any, n: int | None, columns: dict[str, Any] | None
) -> dict[str, LabelColumn]:
    """Normalise the user's ``labels`` argument into encoded columns.

    ``labels`` is None, one value per sample (array/list/tensor, named ``"label"``),
    ``{name: values}``, or column name(s) of ``columns`` (a dataset's or JSONL's fields).
    """
    if labels is None:
        return {}
    if isinstance(labels, str):
        labels = [labels]
        if columns is None:
            raise ValueError(
                f"labels={labels[0]!r} names a column, but the data has no columns; pass one "
                "value per sample instead"
            )
    if columns is None and _names_columns(labels) and n is not None and len(labels) != n:
        # an analyze config's `labels = ["topic"]` on "demo" / .txt data: say both readings
        raise ValueError(
            f"labels {list(labels)} has {len(labels)} values but the data has {n} samples; "
            "read as column names, they name nothing: the data has no columns (a list of "
            "texts, a .txt file or 'demo'); use a .jsonl file or a dataset with those "
            "columns, or pass one value per sample"
        )
    if columns is not None and _names_columns(labels):
        missing = [c for c in labels if c not in columns]
        if missing and (n is None or len(labels) != n or len(missing) == len(labels)):
            raise ValueError(
                f"label column(s) {missing} not in the data; columns: {sorted(columns)}"
            )
        if not missing:
            labels = {c: columns[c]() for c in labels}
    if not isinstance(labels, dict):
        labels = {"label": labels}
    out = {}
    for name, values in labels.items():
        col = LabelColumn.from_values(str(name), values)
        if n is not None and len(col.values) != n:
            hint = ""
            if columns is None and col.is_string:
                hint = " (to name columns, use data with columns: a .jsonl file or a dataset)"
            raise ValueError(
                f"labels[{name!r}] has {len(col.values)} values but the data has {n} "
                f"samples{hint}"
            )
        out[str(name)] = col
    return out


def _names_columns(labels: Any) -> bool:
    return (
        isinstance(labels, (list, tuple))
        and bool(labels)
        and all(isinstance(c, str) for c in labels)
    )
