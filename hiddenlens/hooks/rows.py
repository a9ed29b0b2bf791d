"""Turn a model's activations on a dataset into 2-D rows with traceable metadata.

Text: one row per kept token (padding and, by default, special tokens dropped), with
``sample_idx``, ``position`` and ``token_id``. Anything else: one row per example (trailing
dimensions flattened). Labels attached per sample are broadcast to that sample's rows. The
store writer consumes these batches; ``start_sample`` lets an interrupted run resume.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hiddenlens.hooks.capture import capture
from hiddenlens.hooks.model import ModelHandle, load_model
from hiddenlens.hooks.names import resolve_hook_points

logger = logging.getLogger(__name__)
GRAD_SUFFIX = "#grad"


@dataclass
class RowBatch:
    """Rows produced by one model batch. ``sample_stop`` = first sample not yet consumed."""

    acts: dict[str, torch.Tensor]  # hook -> [n_rows, d]
    meta: dict[str, np.ndarray]  # name -> [n_rows]
    sample_stop: int

    def __len__(self) -> int:
        return len(next(iter(self.meta.values())))


def _as_label_dict(labels: Any, n_samples: int | None) -> dict[str, np.ndarray]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        labels = {"label": labels}
    out = {}
    for name, values in labels.items():
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(
                f"labels[{name!r}] must be 1-D (one value per sample), got {arr.shape}"
            )
        if n_samples is not None and len(arr) != n_samples:
            raise ValueError(
                f"labels[{name!r}] has {len(arr)} values but the data has {n_samples} samples"
            )
        if arr.dtype == object:
            raise TypeError(f"labels[{name!r}] must be numeric or bool, got dtype object")
        out[name] = arr
    return out


def _text_source(data: Any, text_column: str) -> list[str] | None:
    if isinstance(data, str):
        raise TypeError("data is a single string; pass a list of strings (or a datasets.Dataset)")
    if isinstance(data, (list, tuple)) and data and all(isinstance(t, str) for t in data):
        return list(data)
    if type(data).__module__.startswith("datasets"):
        if text_column not in data.column_names:
            raise ValueError(f"dataset has no column {text_column!r}; columns: {data.column_names}")
        return list(data[text_column])
    return None


def n_samples_of(data: Any, text_column: str = "text") -> int | None:
    """Number of samples in ``data`` when known without iterating it."""
    texts = _text_source(data, text_column)
    if texts is not None:
        return len(texts)
    if isinstance(data, (torch.Tensor, np.ndarray)):
        return len(data)
    dataset = getattr(data, "dataset", None)
    return len(dataset) if dataset is not None and hasattr(dataset, "__len__") else None


def data_fingerprint(data: Any, text_column: str = "text") -> str:
    """A content hash identifying ``data`` so a resumed run can check it is the same."""
    digest = hashlib.sha256()
    texts = _text_source(data, text_column)
    if texts is not None:
        for t in texts:
            digest.update(len(t).to_bytes(8, "little"))
            digest.update(t.encode("utf-8", "surrogatepass"))
    elif isinstance(data, (torch.Tensor, np.ndarray)):
        arr = data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else data
        digest.update(str((arr.shape, str(arr.dtype))).encode())
        digest.update(np.ascontiguousarray(arr).tobytes())
    else:
        # An iterable is identified by its type, length and first batch: two different
        # loaders of the same length are then told apart without reading them whole.
        n = n_samples_of(data, text_column)
        digest.update(f"{type(data).__name__}:{n}".encode())
        for x, _, _ in _example_batches(data, 1, 0):
            digest.update(x.detach().cpu().contiguous().numpy().tobytes())
            break
    return digest.hexdigest()


def handle_fingerprint(handle: ModelHandle) -> dict[str, Any]:
    """Model identity for the manifest: id, revision and a hash of the weights.

    Every state-dict entry is hashed by name and raw bytes, 0-dim tensors included
    (TransformerLens's ``IGNORE`` buffer, BatchNorm's ``num_batches_tracked``, scalar
    parameters), so any change of any weight or buffer changes the hash.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(handle.model.state_dict().items()):
        digest.update(name.encode())
        # reshape(-1): a 0-dim tensor cannot be viewed as bytes; n-dim bytes are unchanged
        t = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return {
        "model_id": handle.model_id,
        "kind": handle.kind,
        "revision": handle.revision,
        "weights_sha256": digest.hexdigest(),
    }


def _example_batches(data: Any, batch_size: int, start: int) -> Iterator[tuple[Any, Any, int]]:
    """Yield (inputs, targets_or_None, first_sample_index) for non-text data."""
    if isinstance(data, np.ndarray):
        # torch refuses to share read-only memory (e.g. a memmap): copy only then
        data = torch.from_numpy(data if data.flags.writeable else data.copy())
    if isinstance(data, torch.Tensor):
        for i in range(start, len(data), batch_size):
            yield data[i : i + batch_size], None, i
        return
    if (
        hasattr(data, "__getitem__")
        and hasattr(data, "__len__")
        and not hasattr(data, "batch_size")
    ):
        data = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
    seen = 0
    for item in data:
        x, y = (
            (item[0], item[1])
            if isinstance(item, (tuple, list)) and len(item) > 1
            else (item, None)
        )
        if isinstance(x, (tuple, list)):
            x = x[0]
        n = len(x)
        if seen + n > start:
            skip = max(0, start - seen)
            yield x[skip:], (y[skip:] if y is not None else None), seen + skip
        seen += n


def _text_batches(texts: list[str], batch_size: int, start: int):
    for i in range(start, len(texts), batch_size):
        yield texts[i : i + batch_size], None, i


def _rows_of(name: str, act: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    if keep is None:
        return act.flatten(1) if act.ndim > 1 else act.unsqueeze(1)
    if act.shape[:2] != keep.shape:
        raise ValueError(
            f"hook point {name!r} has shape {tuple(act.shape)}, not [batch, seq, ...] = "
            f"{tuple(keep.shape)}; per-token rows need a per-position activation"
        )
    rows = act[keep]  # [n_kept, ...]
    return rows.flatten(1) if rows.ndim > 1 else rows.unsqueeze(1)


def _forward(handle, names, batch, grads, loss_fn):
    """Run one batch under capture; returns {hook: activation} (+ grads)."""
    with capture(handle, names, grads=grads, stop_early=not grads) as cap:
        if grads:
            with torch.enable_grad():
                out = handle.forward(batch)
                loss = loss_fn(out, batch)
                if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                    raise ValueError("loss_fn must return a scalar tensor")
                loss.backward()
            handle.model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                handle.forward(batch)  # a StopForward here is swallowed by capture
    acts = dict(cap.acts)
    if grads:
        missing = [n for n in names if n not in cap.grads]
        if missing:
            raise ValueError(
                f"no gradient reached hook points {missing}; does the loss depend on them?"
            )
        acts.update({n + GRAD_SUFFIX: cap.grads[n] for n in names})
    return acts


def iter_row_batches(
    handle: Any,
    data: Any,
    hook_points: str | list[str],
    *,
    batch_size: int = 32,
    seq_len: int | None = None,
    labels: Any = None,
    grads: bool = False,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    start_sample: int = 0,
    text_column: str = "text",
    drop_special: bool = True,
) -> Iterator[RowBatch]:
    """Yield :class:`RowBatch` es of activations at ``hook_points`` over ``data``."""
    handle = load_model(handle)
    names = resolve_hook_points(handle, hook_points)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if grads and loss_fn is None:
        raise ValueError("grads=True needs loss_fn(model_output, batch) -> scalar loss")
    texts = _text_source(data, text_column)
    if texts is None and isinstance(data, (list, tuple)) and (not data or isinstance(data[0], str)):
        raise ValueError("data is empty: nothing to cache")
    label_dict = _as_label_dict(labels, n_samples_of(data, text_column))
    if texts is not None:
        if not handle.is_text:
            raise TypeError(f"data is text but model {handle.model_id!r} has no tokenizer")
        source = _text_batches(texts, batch_size, start_sample)
    else:
        if isinstance(data, (torch.Tensor, np.ndarray)) and len(data) == 0:
            raise ValueError("data is empty: nothing to cache")
        source = _example_batches(data, batch_size, start_sample)
    warned = False
    for inputs, targets, first in source:
        if texts is not None:
            batch = handle.tokenize(inputs, seq_len)
            warned = warned or _warn_truncation(handle, inputs, batch, seq_len)
            keep = batch["attention_mask"].bool()
            if drop_special:
                keep &= ~batch["special_tokens_mask"].bool()
        else:
            batch, keep = inputs, None
        acts = _forward(handle, names, batch, grads, loss_fn)
        yield _make_row_batch(names, acts, keep, batch, first, len(inputs), targets, label_dict)


def _warn_truncation(handle: ModelHandle, texts: list[str], batch: dict, seq_len) -> bool:
    """Warn (once) when a text was cut; only re-tokenises batches that reached the limit."""
    limit = handle.token_limit(seq_len)
    if limit is None or batch["input_ids"].shape[1] < limit:
        return False  # the longest sequence is shorter than the limit: nothing was cut
    full = handle.tokenizer(list(texts), truncation=False)["input_ids"]
    if max(len(ids) for ids in full) > limit:
        logger.warning(
            "some texts are longer than %d tokens (the model's or seq_len's limit); "
            "they are truncated (this warning is shown once)",
            limit,
        )
        return True
    return False


def _make_row_batch(names, acts, keep, batch, first, n, targets, label_dict) -> RowBatch:
    out = {name: _rows_of(name, act, keep) for name, act in acts.items()}
    if keep is not None:
        b_idx, pos = keep.nonzero(as_tuple=True)
        meta = {
            "sample_idx": (b_idx + first).numpy().astype(np.int64),
            "position": pos.numpy().astype(np.int32),
            "token_id": batch["input_ids"][keep].numpy().astype(np.int32),
        }
    else:
        meta = {"sample_idx": np.arange(first, first + n, dtype=np.int64)}
    local = meta["sample_idx"]
    for name, values in label_dict.items():
        meta[name] = values[local]
    if targets is not None and "label" not in label_dict:
        t = torch.as_tensor(targets)
        if t.ndim == 1:
            meta["label"] = t.numpy()[local - first]
    return RowBatch(out, meta, first + n)
