"""Turn a model's activations on a DataSource into 2-D rows with traceable metadata.

Rows (the ``rows`` setting): ``"token"``, one row per kept token, for text (padding and,
by default, special tokens dropped) and token ids (padding dropped via the attention mask
or the tokenizer's pad id), with ``sample_idx``, ``position`` and ``token_id``;
``"example"``, one row per example (trailing dimensions flattened), the default for other
data; ``"position"``, one row per spatial position of a channels-first map
(``[B, C, H, W]`` -> ``B*H*W`` rows of ``C``, ``position`` = the flat index ``h*W + w``).
Labels are broadcast to their sample's rows. The data itself is read only through
:mod:`hiddenlens.data`; the store writer consumes the :class:`RowBatch` es.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hiddenlens.data import DataBatch, DataSource, as_data
from hiddenlens.hooks.capture import capture
from hiddenlens.hooks.model import ModelHandle, load_model
from hiddenlens.hooks.names import resolve_hook_points

logger = logging.getLogger(__name__)
GRAD_SUFFIX = "#grad"
ROW_MODES = ("token", "example", "position")


@dataclass
class RowBatch:
    """Rows produced by one model batch. ``sample_stop`` = first sample not yet consumed.

    ``data_digests``: the content hash of the batch's examples (32 bytes each);
    ``label_names``: the code tables of string labels so far; ``shapes``: each hook's
    activation shape per example (per token for token rows) before flattening.
    """

    acts: dict[str, torch.Tensor]  # hook -> [n_rows, d]
    meta: dict[str, np.ndarray]  # name -> [n_rows]
    sample_stop: int
    data_digests: bytes = b""
    label_names: dict[str, list[str]] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.meta.values())))

    def head(self, n: int) -> RowBatch:
        """The first ``n`` rows (for max_rows); the data hash still covers the whole batch."""
        return RowBatch(
            {k: v[:n] for k, v in self.acts.items()},
            {k: v[:n] for k, v in self.meta.items()},
            self.sample_stop,
            self.data_digests,
            self.label_names,
            self.shapes,
        )


@dataclass
class RowSettings:
    """How model outputs become rows (the settings of ``cache_activations`` that do)."""

    rows: str | None = None  # None: "token" for text/tokens, "example" otherwise
    seq_len: int | None = None
    drop_special: bool = True
    grads: bool = False
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.rows is not None and self.rows not in ROW_MODES:
            raise ValueError(f"rows must be one of {ROW_MODES} or None, got {self.rows!r}")
        if self.seq_len is not None and (not isinstance(self.seq_len, int) or self.seq_len < 2):
            raise ValueError(f"seq_len must be None or an int >= 2, got {self.seq_len!r}")
        if self.grads and self.loss_fn is None:
            raise ValueError("grads=True needs loss_fn(model_output, batch) -> scalar loss")

    def mode_for(self, handle: ModelHandle, source: DataSource) -> str:
        """The row mode for ``source`` on ``handle``; refuses text for a model without a
        tokenizer and modes that do not fit the data."""
        if source.kind == "text" and not handle.is_text:
            raise TypeError(f"data is text but model {handle.model_id!r} has no tokenizer")
        return self.mode(source.kind)

    def mode(self, kind: str) -> str:
        """The row mode for data of ``kind``; refuses modes that do not fit it."""
        default = "token" if kind in ("text", "tokens") else "example"
        mode = self.rows or default
        if kind == "text" and mode != "token":
            raise ValueError(f"rows={mode!r} does not apply to text: text gives rows='token'")
        if kind == "tokens" and mode == "position":
            raise ValueError(
                "rows='position' is for channels-first conv maps of examples; token ids "
                "give rows='token' (or 'example')"
            )
        if kind == "examples" and mode == "token":
            raise ValueError(
                "rows='token' needs text or token ids; for tensors of examples use "
                "rows='example' or rows='position'"
            )
        return mode


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
    labels: Any = None,
    start_sample: int = 0,
    text_column: str = "text",
    **settings: Any,
) -> Iterator[RowBatch]:
    """Yield :class:`RowBatch` es of activations at ``hook_points`` over ``data``.

    ``data`` is anything :func:`hiddenlens.data.as_data` accepts; ``settings`` are the
    fields of :class:`RowSettings` (``rows``, ``seq_len``, ``drop_special``, ``grads``,
    ``loss_fn``).
    """
    handle = load_model(handle)
    names = resolve_hook_points(handle, hook_points)
    row_settings = RowSettings(**settings)
    source = as_data(data, text_column=text_column, labels=labels)
    batches = source.batches(batch_size, start_sample)
    yield from rows_of_batches(handle, names, source, batches, row_settings)


def rows_of_batches(
    handle: ModelHandle,
    names: list[str],
    source: DataSource,
    batches: Iterable[DataBatch],
    settings: RowSettings,
) -> Iterator[RowBatch]:
    """Run the model on each of ``source``'s ``batches``; yield their rows."""
    mode = settings.mode_for(handle, source)
    warned = [False]
    for batch in batches:
        model_input, keep, ids = batch_model_input(handle, batch, source.kind, settings, warned)
        acts = _forward(handle, names, model_input, settings.grads, settings.loss_fn)
        yield _make_row_batch(acts, batch, keep if mode == "token" else None, ids, mode, source)


def batch_model_input(handle: ModelHandle, batch: DataBatch, kind: str, settings, warned: list):
    """(what the model is called on, keep mask [b, seq] or None, token ids or None) for a
    :class:`DataBatch` of a source of ``kind``; ``warned[0]``: truncation already logged."""
    if kind == "text":
        enc = handle.tokenize(batch.inputs, settings.seq_len)
        if not warned[0]:
            warned[0] = _warn_truncation(handle, batch.inputs, enc, settings.seq_len)
        keep = enc["attention_mask"].bool()
        if settings.drop_special:
            keep &= ~enc["special_tokens_mask"].bool()
        return enc, keep, enc["input_ids"]
    if kind == "examples":
        return batch.inputs, None, None
    ids, mask = batch.inputs, batch.attention_mask
    limit = handle.token_limit(settings.seq_len)
    if limit is not None and ids.shape[1] > limit:
        if not warned[0]:
            logger.warning("token ids longer than %d are truncated (shown once)", limit)
            warned[0] = True
        ids, mask = ids[:, :limit], (mask[:, :limit] if mask is not None else None)
    if mask is None:
        mask = _pad_mask(handle, ids)
    mask = mask.long()
    if handle.kind == "module":
        return ids, mask.bool(), ids
    return {"input_ids": ids, "attention_mask": mask}, mask.bool(), ids


def _pad_mask(handle: ModelHandle, ids: torch.Tensor) -> torch.Tensor:
    """1 where ``ids`` is not the tokenizer's pad id (all ones without a distinct pad)."""
    tok = handle.tokenizer
    pad = getattr(tok, "pad_token_id", None) if tok is not None else None
    if pad is None or pad == getattr(tok, "eos_token_id", None):
        return torch.ones_like(ids)  # pad == eos (GPT-2): pass an attention_mask instead
    return (ids != pad).long()


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


def _token_rows(name: str, act: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    if act.shape[:2] != keep.shape:
        raise ValueError(
            f"hook point {name!r} has shape {tuple(act.shape)}, not [batch, seq, ...] = "
            f"{tuple(keep.shape)}; per-token rows need a per-position activation"
        )
    rows = act[keep]  # [n_kept, ...]
    return rows.flatten(1) if rows.ndim > 1 else rows.unsqueeze(1)


def _position_rows(name: str, act: torch.Tensor) -> torch.Tensor:
    if act.ndim < 3:
        raise ValueError(
            f"rows='position' needs a channels-first map [batch, C, H, W] (or [batch, C, L]) "
            f"at hook point {name!r}, got shape {tuple(act.shape)}"
        )
    return act.movedim(1, -1).reshape(-1, act.shape[1])  # [B * H * W, C]


def _make_row_batch(acts, batch, keep, ids, mode, source) -> RowBatch:
    """Rows of every hook plus their metadata (sample, position, token, labels)."""
    first, n = batch.start, len(batch)
    if mode == "token":
        out = {h: _token_rows(h, a, keep) for h, a in acts.items()}
        b_idx, pos = keep.nonzero(as_tuple=True)
        meta = {
            "sample_idx": (b_idx + first).numpy().astype(np.int64),
            "position": pos.numpy().astype(np.int32),
            "token_id": ids[keep].numpy().astype(np.int32),
        }
        shapes = {h: list(a.shape[2:]) for h, a in acts.items()}
    elif mode == "position":
        out = {h: _position_rows(h, a) for h, a in acts.items()}
        sizes = {h: int(np.prod(a.shape[2:])) for h, a in acts.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(
                f"rows='position' needs every hook point to have the same number of "
                f"positions, got {sizes}; cache them in separate stores"
            )
        p = next(iter(sizes.values()))
        meta = {
            "sample_idx": np.repeat(np.arange(first, first + n, dtype=np.int64), p),
            "position": np.tile(np.arange(p, dtype=np.int32), n),
        }
        shapes = {h: list(a.shape[1:]) for h, a in acts.items()}
    else:
        out = {h: a.flatten(1) if a.ndim > 1 else a.unsqueeze(1) for h, a in acts.items()}
        meta = {"sample_idx": np.arange(first, first + n, dtype=np.int64)}
        shapes = {h: list(a.shape[1:]) for h, a in acts.items()}
    local = meta["sample_idx"] - first
    for name, values in batch.labels.items():
        meta[name] = values[local]
    return RowBatch(out, meta, batch.stop, batch.digests(), source.label_names(), shapes)
