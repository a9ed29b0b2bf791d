"""``as_data``: turn any input hiddenlens accepts into a :class:`DataSource`, once.

Accepted: a list of strings; ``"demo"`` (the bundled corpus); a ``.txt`` / ``.jsonl`` path
or a saved Hugging Face dataset directory; a ``datasets.Dataset`` or ``IterableDataset``;
token ids (an ``int32``/``int64`` tensor or array ``[n_seq, seq_len]``, or a mapping with
``input_ids`` and optionally ``attention_mask``); examples (any other tensor or array
``[n, ...]``); a map-style dataset or a DataLoader yielding ``x`` or ``(x, y)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hiddenlens.data import files
from hiddenlens.data.labels import LabelColumn, label_dict
from hiddenlens.data.source import (
    DataSource,
    check_texts,
    hf_text_reader,
    loader_reader,
    sequence_reader,
    stream_text_reader,
)

ACCEPTED = (
    "a list of strings, 'demo', a .txt/.jsonl path, a saved HF dataset directory, a "
    "datasets.Dataset or IterableDataset, token ids [n_seq, seq_len], a tensor/array of "
    "examples, a map-style dataset or a DataLoader"
)


def as_data(data: Any, *, text_column: str = "text", labels: Any = None) -> DataSource:
    """The one place that understands the user's data.

    Args:
        data: see the module docstring; a ``DataSource`` is returned as it is.
        text_column: the text field of a dataset or JSONL file.
        labels: one value per sample (array, list or tensor; numbers, bools or strings),
            ``{name: values}``, or the name(s) of columns of ``data`` (a dataset's or a
            JSONL file's fields). Strings are encoded to int codes once; the code table
            is ``source.labels[name].names``.
    """
    if isinstance(data, DataSource):
        if labels is not None:
            raise ValueError("labels were given twice: pass them to as_data, not both")
        return data
    if not isinstance(text_column, str) or not text_column:
        raise ValueError(f"text_column must be a non-empty string, got {text_column!r}")
    source = _convert(data, text_column, labels)
    if source.length == 0:
        raise ValueError(f"data is empty ({source.description}): nothing to cache")
    return source


def _convert(data: Any, text_column: str, labels: Any) -> DataSource:
    if isinstance(data, (str, Path)):
        return _from_path(data, text_column, labels)
    module = type(data).__module__
    if module.startswith("datasets"):
        return _from_hf(data, text_column, labels)
    if isinstance(data, (list, tuple)) and any(isinstance(t, str) for t in data):
        check_texts(data, "data")
        return _texts(list(data), labels, "a list of strings")
    if isinstance(data, Mapping):
        return _from_token_mapping(data, labels)
    if isinstance(data, np.ndarray):
        data = torch.from_numpy(data if data.flags.writeable else data.copy())
    if isinstance(data, torch.Tensor):
        if data.ndim == 0:
            raise ValueError("data is a 0-dim tensor; pass a tensor [n, ...] of examples")
        if data.ndim == 2 and data.dtype in (torch.int32, torch.int64):
            return _tokens(data.long(), None, labels)
        reader = sequence_reader(data)
        return _source("examples", reader, len(data), labels, f"tensor {tuple(data.shape)}")
    if hasattr(data, "__iter__") or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        reader = loader_reader(data)
        return _source("examples", reader, _loader_length(data), labels, type(data).__name__)
    raise TypeError(f"as_data() cannot read {type(data).__name__}; accepted: {ACCEPTED}")


def _source(kind, reader, n, labels, description, columns=None) -> DataSource:
    labels = label_dict(labels, n, columns)
    return DataSource(kind, reader, length=n, labels=labels, description=description)


def _texts(texts: list[str], labels: Any, description: str, columns=None) -> DataSource:
    return _source("text", sequence_reader(texts), len(texts), labels, description, columns)


def _tokens(ids: torch.Tensor, mask: torch.Tensor | None, labels: Any) -> DataSource:
    description = f"token ids {tuple(ids.shape)}"
    return _source("tokens", sequence_reader(ids, mask), len(ids), labels, description)


def _from_token_mapping(data: Mapping, labels: Any) -> DataSource:
    if "input_ids" not in data:
        raise ValueError(
            f"a mapping as data must hold token ids under 'input_ids' (and optionally "
            f"'attention_mask'); got keys {sorted(data)}"
        )
    ids = torch.as_tensor(np.asarray(data["input_ids"]))
    if ids.ndim != 2 or ids.dtype.is_floating_point:
        raise ValueError(
            f"input_ids must be integer [n_seq, seq_len], got {ids.dtype}{tuple(ids.shape)}"
        )
    mask = data.get("attention_mask")
    if mask is not None:
        mask = torch.as_tensor(np.asarray(mask))
        if mask.shape != ids.shape:
            raise ValueError(
                f"attention_mask has shape {tuple(mask.shape)} but input_ids {tuple(ids.shape)}"
            )
    return _tokens(ids.long(), mask, labels)


def _from_path(data: str | Path, text_column: str, labels: Any) -> DataSource:
    if str(data) == "demo":
        from hiddenlens.corpus import demo_corpus

        return _texts(demo_corpus(), labels, "the demo corpus")
    path = files.resolve_path(data)
    if path.is_dir():
        return _from_hf(files.load_saved_dataset(path), text_column, labels, where=str(path))
    if path.suffix == ".jsonl":
        texts, columns = files.read_jsonl(path, text_column)
        return _texts(texts, labels, str(path), columns)
    return _texts(files.read_txt(path), labels, str(path))


def _from_hf(ds: Any, text_column: str, labels: Any, where: str | None = None) -> DataSource:
    import datasets

    where = where or type(ds).__name__
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        raise ValueError(f"{where} is a DatasetDict; pick a split: {', '.join(ds)}")
    columns = ds.column_names
    pretokenised = columns is not None and text_column not in columns and "input_ids" in columns
    if pretokenised and isinstance(ds, datasets.Dataset):
        return _from_hf_tokens(ds, labels, where)
    if columns is not None and text_column not in columns:
        raise ValueError(
            f"{where} has no column {text_column!r} (nor a pre-tokenised 'input_ids' column "
            f"of a map-style dataset); columns: {columns}"
        )
    if isinstance(ds, datasets.IterableDataset):
        names = _stream_label_names(labels, columns)
        src = DataSource(
            "text",
            stream_text_reader(ds, text_column, names),
            length=None,
            description=f"{where} (streamed)",
        )
        for name in names:
            src.labels[name] = LabelColumn(name, streamed=True)
        return src
    if not isinstance(ds, datasets.Dataset):
        raise TypeError(f"as_data() cannot read {type(ds).__name__}; accepted: {ACCEPTED}")
    cols = {c: (lambda c=c: _column(ds, c)) for c in columns}
    return _source("text", hf_text_reader(ds, text_column), len(ds), labels, where, cols)


def _from_hf_tokens(ds: Any, labels: Any, where: str) -> DataSource:
    """A pre-tokenised dataset (an ``input_ids`` column, as SAELens' pretokenize runner
    writes): one sequence per example; ragged rows are right-padded and masked."""
    rows = ds["input_ids"]
    if any(not hasattr(r, "__len__") or isinstance(r, str) for r in rows[:1]):
        raise ValueError(f"{where}: 'input_ids' must hold a list of token ids per example")
    n_max = max((len(r) for r in rows), default=0)
    if n_max == 0:
        raise ValueError(f"{where}: 'input_ids' holds no tokens")
    ids = torch.zeros(len(rows), n_max, dtype=torch.long)
    mask = torch.zeros(len(rows), n_max, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.as_tensor(r, dtype=torch.long)
        mask[i, : len(r)] = 1
    if "attention_mask" in ds.column_names:  # the dataset's own mask wins where given
        for i, m in enumerate(ds["attention_mask"]):
            mask[i, : len(m)] = torch.as_tensor(m, dtype=torch.long)
    cols = {c: (lambda c=c: _column(ds, c)) for c in ds.column_names
            if c not in ("input_ids", "attention_mask")}
    description = f"{where} (pre-tokenised, {tuple(ids.shape)})"
    return _source("tokens", sequence_reader(ids, mask), len(ids), labels, description, cols)


def _column(ds: Any, name: str) -> list:
    """A dataset column; a ``ClassLabel`` column as its class names (so they are kept)."""
    values = ds[name]
    feature = ds.features.get(name)
    if hasattr(feature, "int2str") and hasattr(feature, "names"):
        return feature.int2str(list(values))
    return values


def _stream_label_names(labels: Any, columns: list[str] | None) -> list[str]:
    if labels is None:
        return []
    names = [labels] if isinstance(labels, str) else labels
    if not isinstance(names, (list, tuple)) or not all(isinstance(c, str) for c in names):
        raise TypeError("labels of a streamed dataset must be column name(s) of the stream")
    missing = [c for c in names if columns is not None and c not in columns]
    if missing:
        raise ValueError(f"label column(s) {missing} not in the stream; columns: {columns}")
    return list(names)


def _loader_length(data: Any) -> int | None:
    if hasattr(data, "batch_size") and hasattr(data, "dataset"):  # a DataLoader
        dataset = data.dataset
        return len(dataset) if hasattr(dataset, "__len__") else None
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return len(data)
    return None
