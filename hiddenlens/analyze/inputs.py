"""What a run reads: the model handle, the user's data and the labels of every store row.

Document labels (``[data] labels``: string or numeric columns) are encoded once to integer
codes with their names kept for the report, and broadcast to rows through the store's
``sample_idx``. For text, per-token labels are derived from the original text
(``hiddenlens.corpus.token_properties``): ``is_digit``, ``is_capitalised``, ``is_punct``,
``is_continuation``, a 5-class ``token_kind``, a log-scale ``position_bucket`` and
``early_position`` (the first 8 tokens).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

TOKEN_KINDS = ("digit", "capitalised", "punct", "continuation", "other")
POSITION_EDGES = (1, 4, 8, 16, 32, 64)
TOKEN_LABELS = (
    "is_digit", "is_capitalised", "is_punct", "is_continuation",
    "token_kind", "position_bucket", "early_position",
)


@dataclass
class RunData:
    """The data as the store writer takes it, plus document labels."""

    data: Any  # list[str] for text, a tensor/array of examples otherwise
    texts: list[str] | None
    doc_labels: dict[str, np.ndarray] = field(default_factory=dict)  # name -> int codes
    label_names: dict[str, list[str]] = field(default_factory=dict)  # name -> class names


def load_handle(cfg) -> Any:
    """The ModelHandle of ``[model]`` (``tokenizer=`` passed through when given)."""
    from hiddenlens.hooks import load_model

    kwargs: dict[str, Any] = {"device": cfg.device}
    if cfg.tokenizer is not None:
        kwargs["tokenizer"] = cfg.tokenizer
    return load_model(cfg.spec, **kwargs)


def _encode(name: str, values: list | np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer codes and class names of a label column (strings, bools or numbers)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "US" or arr.dtype == object:
        if any(v is None for v in values):
            raise ValueError(f"label column {name!r} has missing values (index {list(values).index(None)})")
        names, codes = np.unique(arr.astype(str), return_inverse=True)
        return codes.astype(np.int64), [str(n) for n in names]
    if arr.dtype.kind == "f" and not np.all(arr == np.round(arr)):
        raise ValueError(f"label column {name!r} holds non-integer numbers; labels are classes")
    uniq, codes = np.unique(arr, return_inverse=True)
    return codes.astype(np.int64), [str(u.item() if hasattr(u, "item") else u) for u in uniq]


def _jsonl_columns(path: Path, columns: list[str]) -> dict[str, list]:
    out: dict[str, list] = {c: [] for c in columns}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            record = json.loads(line)
            for c in columns:
                if c not in record:
                    raise ValueError(f"{path}:{lineno} has no label column {c!r}; it has {sorted(record)}")
                out[c].append(record[c])
    return out


def _file_columns(source: str, columns: list[str]) -> dict[str, list]:
    path = Path(source).expanduser()
    if path.suffix == ".jsonl":
        return _jsonl_columns(path, columns)
    if path.is_dir():
        from datasets import load_from_disk

        ds = load_from_disk(str(path))
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise ValueError(f"dataset at {path} has no column(s) {missing}; columns: {ds.column_names}")
        return {c: list(ds[c]) for c in columns}
    raise ValueError(
        f"labels {columns} need a source with columns (.jsonl, .npz or a dataset directory); "
        f"{source!r} has none"
    )


def _array_source(source: str, cfg) -> tuple[Any, dict[str, Any]]:
    """A .npy (examples) or .npz (``x`` plus label arrays) file."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data source {source!r} does not exist")
    if path.suffix == ".npy":
        return np.load(path), {}
    arrays = np.load(path)
    if "x" not in arrays.files:
        raise ValueError(f"{path} needs an array named 'x' (the examples); it has {arrays.files}")
    missing = [c for c in cfg.labels if c not in arrays.files]
    if missing:
        raise ValueError(f"{path} has no label array(s) {missing}; it has {arrays.files}")
    return arrays["x"], {c: arrays[c] for c in cfg.labels}


def load_data(cfg) -> RunData:
    """Read ``[data]``: texts (demo, .txt, .jsonl, dataset dir) or examples (.npy, .npz,
    or an in-memory list of strings / tensor / array / dict with ``x`` and label arrays)."""
    src = cfg.source
    columns: dict[str, Any] = {}
    if isinstance(src, str) and Path(src).suffix in (".npy", ".npz"):
        data, columns = _array_source(src, cfg)
    elif isinstance(src, (str, Path)):
        from hiddenlens.corpus import load_texts

        data = load_texts(src, text_column=cfg.text_column)
        if cfg.labels:
            columns = _file_columns(str(src), cfg.labels)
    elif isinstance(src, dict):
        if "x" not in src:
            raise ValueError(f"a dict data source needs 'x' (the examples); it has {sorted(src)}")
        data = src["x"]
        missing = [c for c in cfg.labels if c not in src]
        if missing:
            raise ValueError(f"data source has no label column(s) {missing}; it has {sorted(src)}")
        columns = {c: src[c] for c in cfg.labels}
    else:
        data = src
        if cfg.labels:
            raise ValueError("labels need a source with columns: a dict with 'x', .npz or .jsonl")
    if cfg.max_docs is not None:
        data = data[: cfg.max_docs]
        columns = {k: v[: cfg.max_docs] for k, v in columns.items()}
    texts = list(data) if isinstance(data, list) and data and isinstance(data[0], str) else None
    run = RunData(data, texts)
    for name, values in columns.items():
        values = values.cpu().numpy() if hasattr(values, "cpu") else values
        run.doc_labels[name], run.label_names[name] = _encode(name, values)
    return run


def token_labels(handle, texts: list[str], meta: dict, seq_len: int | None) -> dict[str, np.ndarray]:
    """Per-row token labels of a text store (see the module docstring)."""
    from hiddenlens.corpus import token_properties

    props = token_properties(
        handle.tokenizer, texts, meta["sample_idx"], meta["position"],
        seq_len=handle.token_limit(seq_len),
    )
    out = {k: np.asarray(props[k]).astype(np.int64) for k in TOKEN_LABELS[:4]}
    kind = np.full(len(props["position"]), len(TOKEN_KINDS) - 1, dtype=np.int64)
    for i, key in enumerate(["is_continuation", "is_punct", "is_capitalised", "is_digit"]):
        kind[np.asarray(props[key], dtype=bool)] = 3 - i
    out["token_kind"] = kind
    position = np.asarray(meta["position"])
    out["position_bucket"] = np.digitize(position, POSITION_EDGES).astype(np.int64)
    out["early_position"] = (position < 8).astype(np.int64)
    return out


@dataclass
class RowLabels:
    """Integer labels of every store row, with class names for the report."""

    values: dict[str, np.ndarray]
    names: dict[str, list[str]]
    unavailable: dict[str, str] = field(default_factory=dict)  # name -> why not

    def pick(self, requested: list[str], default: list[str] | None = None) -> list[str]:
        """The requested label names (or the default), checked against what exists."""
        wanted = requested or (default if default is not None else list(self.values))
        bad = [n for n in wanted if n not in self.values]
        if bad:
            why = "; ".join(f"{n}: {self.unavailable[n]}" for n in bad if n in self.unavailable)
            raise ValueError(
                f"label(s) {bad} are not available for this run"
                f"{' (' + why + ')' if why else ''}; available: {sorted(self.values)}"
            )
        return wanted


def row_labels(handle, run_data: RunData, store, cfg_data, seq_len) -> RowLabels:
    """Document labels broadcast to rows, plus token labels for text stores."""
    meta = store.meta
    sample_idx = np.asarray(meta["sample_idx"])
    values = {k: v[sample_idx] for k, v in run_data.doc_labels.items()}
    names = dict(run_data.label_names)
    unavailable = {}
    if run_data.texts is not None and cfg_data.token_labels and "position" in meta:
        try:
            values.update(token_labels(handle, run_data.texts, meta, seq_len))
            names["token_kind"] = list(TOKEN_KINDS)
        except (TypeError, ValueError, NotImplementedError, KeyError) as err:
            logger.warning("token labels not derived: %s", err)
            unavailable.update(dict.fromkeys(TOKEN_LABELS, f"token labels failed: {err}"))
    else:
        why = "the data is not text" if run_data.texts is None else "data.token_labels = false"
        unavailable.update(dict.fromkeys(TOKEN_LABELS, why))
    return RowLabels(values, names, unavailable)
