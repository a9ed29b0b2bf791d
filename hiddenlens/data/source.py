"""``DataSource``: the user's data understood once (kind, length, labels, batches, hash).

A source wraps a *reader*, a function ``reader(batch_size, start)`` that yields
``(first_index, inputs, attention_mask, streamed_labels)`` for the examples from ``start``
on. The readers below cover in-memory sequences (text lists, tensors, token ids), Hugging
Face datasets (sliced, never materialised), streams (``IterableDataset``) and PyTorch
loaders; ``DataSource.batches`` adds the label columns and yields :class:`DataBatch` es.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from hiddenlens.data.batch import KINDS, DataBatch
from hiddenlens.data.labels import LabelColumn

Reader = Callable[[int, int], Iterator[tuple[int, Any, Any, dict]]]


class DataSource:
    """What the data is (``kind``: text, tokens or examples), how long, and its labels.

    Build one with :func:`hiddenlens.data.as_data`. ``labels`` maps a name to its
    :class:`LabelColumn` (``names`` holds a string column's code table); columns a stream
    carries (an IterableDataset's fields, a DataLoader's targets) appear as they are read.
    """

    def __init__(
        self,
        kind: str,
        reader: Reader,
        *,
        length: int | None,
        labels: dict[str, LabelColumn] | None = None,
        description: str = "data",
    ):
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.kind, self.length, self.description = kind, length, description
        self.labels = dict(labels or {})
        self._reader = reader

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError(f"{self.description} has no known length (it is a stream)")
        return self.length

    def __repr__(self) -> str:
        n = "?" if self.length is None else f"{self.length:,}"
        return f"DataSource({self.kind}, n={n}, labels={sorted(self.labels)}, {self.description})"

    def batches(self, batch_size: int, start: int = 0) -> Iterator[DataBatch]:
        """Batches from example ``start`` on, in order (a loader keeps its own batch size)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(start, int) or start < 0:
            raise ValueError(f"start must be a non-negative int, got {start!r}")
        for first, inputs, mask, streamed in self._reader(batch_size, start):
            if len(inputs) == 0:
                continue
            yield DataBatch(first, inputs, self._labels_of(first, len(inputs), streamed), mask)

    def _labels_of(self, first: int, n: int, streamed: dict) -> dict[str, np.ndarray]:
        out = {}
        for name, col in self.labels.items():
            if col.values is not None:
                out[name] = col.values[first : first + n]
        for name, values in streamed.items():
            col = self.labels.get(name)
            if col is None:
                col = self.labels[name] = LabelColumn(name, streamed=True)
            if col.values is None:
                out[name] = col.encode(values)
        return out

    def take(self, n: int) -> DataSource:
        """The first ``n`` examples (labels and their code tables shared with this source)."""
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"take(n) needs a positive int, got {n!r}")
        reader = self._reader

        def head(batch_size: int, start: int):
            for first, inputs, mask, streamed in reader(batch_size, start):
                if first >= n:
                    return
                keep = min(len(inputs), n - first)
                mask = mask[:keep] if mask is not None else None
                yield first, inputs[:keep], mask, {k: v[:keep] for k, v in streamed.items()}

        length = n if self.length is None else min(n, self.length)
        out = DataSource(self.kind, head, length=length, description=self.description)
        out.labels = self.labels  # shared: a stream's code table stays one table
        return out

    def identity(self) -> dict[str, Any]:
        """What a re-run must agree on before the content hash is checked."""
        return {
            "kind": self.kind,
            "length": self.length,
            "labels": {name: col.identity() for name, col in sorted(self.labels.items())},
        }

    def label_names(self) -> dict[str, list[str]]:
        """{label: names} for string labels (code ``i`` means ``names[i]``)."""
        return {n: list(c.names) for n, c in self.labels.items() if c.names is not None}


# -- readers ----------------------------------------------------------------------------


def sequence_reader(items: Any, mask: torch.Tensor | None = None) -> Reader:
    """A list of texts, or a tensor of examples / token ids ``[n, ...]``, sliced."""

    def read(batch_size: int, start: int):
        for i in range(start, len(items), batch_size):
            m = mask[i : i + batch_size] if mask is not None else None
            yield i, items[i : i + batch_size], m, {}

    return read


def hf_text_reader(ds: Any, text_column: str) -> Reader:
    """A ``datasets.Dataset``'s text column, read a slice at a time."""
    texts = ds.select_columns([text_column])

    def read(batch_size: int, start: int):
        for i in range(start, len(texts), batch_size):
            chunk = texts[i : i + batch_size][text_column]
            check_texts(chunk, f"dataset column {text_column!r}", offset=i)
            yield i, list(chunk), None, {}

    return read


def stream_text_reader(ds: Any, text_column: str, label_names: list[str]) -> Reader:
    """A stream of records (``datasets.IterableDataset``): text and label fields per item."""

    def read(batch_size: int, start: int):
        texts: list[str] = []
        labels: dict[str, list] = {name: [] for name in label_names}
        first = start
        for i, item in enumerate(ds):
            for name in (text_column, *label_names):
                if name not in item:
                    raise ValueError(f"item {i} of the stream has no field {name!r}: {list(item)}")
            if i < start:
                continue
            texts.append(item[text_column])
            for name in label_names:
                labels[name].append(item[name])
            if len(texts) == batch_size:
                check_texts(texts, f"stream field {text_column!r}", offset=first)
                yield first, texts, None, labels
                texts, labels, first = [], {name: [] for name in label_names}, i + 1
        if texts:
            check_texts(texts, f"stream field {text_column!r}", offset=first)
            yield first, texts, None, labels

    return read


def loader_reader(data: Any) -> Reader:
    """A DataLoader, a map-style dataset or any iterable of ``x`` / ``(x, y)`` batches."""

    def read(batch_size: int, start: int):
        loader = data
        if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
        seen = 0
        for item in loader:
            x, y = _split_item(item)
            n = len(x)
            if seen + n > start:
                skip = max(0, start - seen)
                streamed = {"label": y[skip:]} if y is not None else {}
                yield seen + skip, x[skip:], None, streamed
            seen += n

    return read


def _split_item(item: Any) -> tuple[torch.Tensor, Any]:
    """(inputs, 1-D targets or None) of one loader batch."""
    x, y = (item[0], item[1]) if isinstance(item, (tuple, list)) and len(item) > 1 else (item, None)
    if isinstance(x, (tuple, list)):
        x = x[0]
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"a DataLoader / dataset must yield tensors x or (x, y), got {type(x).__name__}"
        )
    if y is not None:
        y = torch.as_tensor(y) if not isinstance(y, (list, tuple)) else y
        if isinstance(y, torch.Tensor):
            y = y.numpy() if y.ndim == 1 else None
    return x, y


def check_texts(texts: Any, what: str, *, offset: int = 0) -> None:
    """Every item is a ``str``; else a TypeError naming the index of the first one not."""
    bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
    if bad is not None:
        raise TypeError(
            f"{what}[{offset + bad}] is {texts[bad]!r} ({type(texts[bad]).__name__}); "
            "text data must hold only strings"
        )
