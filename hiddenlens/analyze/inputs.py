"""What a run reads: the model handle, the user's data and the labels of every store row.

Document labels (``[data] labels``: string or numeric columns) are encoded once to integer
codes with their names kept for the report, and broadcast to rows through the store's
``sample_idx``. For text, per-token labels are derived from the original text
(``hiddenlens.corpus.token_properties``): ``is_digit``, ``is_capitalised``, ``is_punct``,
``is_continuation``, a 5-class ``token_kind``, a log-scale ``position_bucket`` and
``early_position`` (the first 8 tokens).
"""

from __future__ import annotations

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
    """The data as a DataSource (what the store writer takes), plus its first examples
    materialised for the sections that run the model themselves."""

    source: Any  # hiddenlens.data.DataSource (carrying the [data] labels)
    data: Any = None  # list[str] (text) or a tensor of the first examples
    mask: Any = None  # token ids: their attention mask (padding), else None

    @property
    def texts(self) -> list[str] | None:
        return self.data if self.source.kind == "text" else None

    @property
    def kind(self) -> str:
        return self.source.kind


def load_handle(cfg) -> Any:
    """The ModelHandle of ``[model]`` (``tokenizer=`` passed through when given)."""
    from hiddenlens.hooks import load_model

    kwargs: dict[str, Any] = {"device": cfg.device}
    if cfg.tokenizer is not None:
        kwargs["tokenizer"] = cfg.tokenizer
    return load_model(cfg.spec, **kwargs)


def _encode(values: np.ndarray, names: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Row labels as codes 0..C-1 with a name per code (string labels keep their names)."""
    uniq, codes = np.unique(np.asarray(values), return_inverse=True)
    if names is not None:
        return codes.astype(np.int64), [names[int(u)] for u in uniq]
    return codes.astype(np.int64), [str(u.item() if hasattr(u, "item") else u) for u in uniq]


def _array_source(source: str, labels: list[str]) -> tuple[Any, dict[str, Any] | None]:
    """A .npy (examples) or .npz (``x`` plus one array per label) file."""
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data source {source!r} does not exist")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False), None
    arrays = np.load(path, allow_pickle=False)
    if "x" not in arrays.files:
        raise ValueError(f"{path} needs an array named 'x' (the examples); it has {arrays.files}")
    missing = [c for c in labels if c not in arrays.files]
    if missing:
        raise ValueError(f"{path} has no label array(s) {missing}; it has {arrays.files}")
    return arrays["x"], {c: arrays[c] for c in labels} or None


def _materialise(source, n: int) -> tuple[Any, Any]:
    """The first ``n`` examples: a list of texts, or a tensor (and token ids' mask)."""
    import torch

    items, masks, seen = [], [], 0
    for batch in source.batches(256):
        items.append(batch.inputs)
        masks.append(batch.attention_mask)
        seen += len(batch.inputs)
        if seen >= n:
            break
    if source.kind == "text":
        return [t for chunk in items for t in chunk][:n], None
    x = torch.cat([torch.as_tensor(np.asarray(i)) if not torch.is_tensor(i) else i for i in items])[:n]
    mask = torch.cat(masks)[:n] if masks and all(m is not None for m in masks) else None
    return x, mask


def load_data(cfg) -> RunData:
    """``[data]`` as a DataSource (``hiddenlens.data.as_data``); also accepts a .npy / .npz
    file and a dict ``{"x": examples, "<label>": values}``."""
    from hiddenlens.data import as_data

    data, labels = cfg.source, (list(cfg.labels) or None)
    if isinstance(data, str) and Path(data).suffix in (".npy", ".npz"):
        data, labels = _array_source(data, cfg.labels)
    elif isinstance(data, dict) and "x" in data:
        missing = [c for c in cfg.labels if c not in data]
        if missing:
            raise ValueError(f"data source has no label column(s) {missing}; it has {sorted(data)}")
        data, labels = data["x"], {c: data[c] for c in cfg.labels} or None
    source = as_data(data, text_column=cfg.text_column, labels=labels)
    if cfg.max_docs is not None:
        source = source.take(cfg.max_docs)
    return RunData(source)


def materialise(run_data: RunData, store) -> None:
    """Keep the examples the store's rows came from (texts for token labels) in memory."""
    needed = int(np.asarray(store.meta["sample_idx"]).max()) + 1 if len(store) else 0
    run_data.data, run_data.mask = _materialise(run_data.source, max(needed, 2_500))


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
    """Document labels of the store's rows (as codes), plus token labels for text."""
    meta = store.meta
    stored = dict(getattr(store, "label_names", None) or {})
    values, names = {}, {}
    for name in cfg_data.labels:
        values[name], names[name] = _encode(meta[name], stored.get(name))
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
