"""Code activations and their statistics.

"Codebook Features" (Tamkin, Taufeeque & Goodman, 2023) reads a network through the codes
that fire for each token. This module records them ([n_rows, k] int arrays per hook point,
rows aligned with the activation store's convention: one per kept token) and summarises
them per code (usage, label entropy, purity) and per layer (entropy, perplexity, dead
codes). Metric functions are pure and return flat dicts of floats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from hiddenlens._keys import metric_key
from hiddenlens.codebook.attach import CodebookModel
from hiddenlens.codebook.finetune import default_forward


def default_keep(batch) -> torch.Tensor | None:
    """Rows to keep, as in the activation store: real tokens (attention_mask == 1) that are
    not special tokens (when the batch has a ``special_tokens_mask``); else all rows."""
    if not isinstance(batch, dict) or "attention_mask" not in batch:
        return None
    keep = batch["attention_mask"].bool()
    if "special_tokens_mask" in batch:
        keep = keep & ~batch["special_tokens_mask"].bool()
    return keep


@torch.no_grad()
def record_codes(
    cb: CodebookModel,
    batches: Iterable,
    *,
    forward: Callable = default_forward,
    keep: Callable | None = default_keep,
) -> dict[str, np.ndarray]:
    """Run the model over ``batches`` and collect the selected codes.

    Returns {hook point: int64 array [n_rows, k]}; rows are the activation's leading dims
    flattened, filtered by ``keep(batch)`` (a bool mask over those dims) when it is given.
    """
    out: dict[str, list[np.ndarray]] = {h: [] for h in cb.hook_points}
    for batch in batches:
        forward(cb.model, batch)
        mask = keep(batch) if keep is not None else None
        for hook, layer in cb.layers.items():
            codes = layer.last_codes
            if codes is None:
                raise RuntimeError(f"the codebook at {hook!r} did not run in the forward pass")
            if mask is not None:
                codes = codes[mask.to(codes.device)]
            out[hook].append(codes.reshape(-1, codes.shape[-1]).cpu().numpy())
    return {h: np.concatenate(v) for h, v in out.items()}


def code_usage(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """How often each code fires: int array [n_codes] (a row with k codes counts k times)."""
    codes = np.asarray(codes)
    if codes.size and (codes.min() < 0 or codes.max() >= n_codes):
        raise ValueError(f"code ids must be in [0, {n_codes}), got [{codes.min()}, {codes.max()}]")
    return np.bincount(codes.reshape(-1), minlength=n_codes)


def layer_stats(codes: np.ndarray, n_codes: int, *, name: str = "") -> dict[str, float]:
    """Usage statistics of one codebook: entropy (nats) of the code-usage distribution,
    perplexity exp(entropy), fraction and number of dead (never used) codes, share of the
    most used code. Keys are ``codebook/<metric>[/<name>]``, e.g. ``codebook/code_entropy``."""
    counts = code_usage(codes, n_codes).astype(np.float64)
    total = counts.sum()
    if total == 0:
        raise ValueError("no code activations given")
    p = counts[counts > 0] / total
    entropy = float(-(p * np.log(p)).sum())
    out = {
        "code_entropy": entropy,
        "code_perplexity": float(np.exp(entropy)),
        "dead_fraction": float((counts == 0).mean()),
        "n_dead": float((counts == 0).sum()),
        "max_usage_share": float(counts.max() / total),
    }
    return {metric_key("codebook", k, name or None): v for k, v in out.items()}


def all_layer_stats(codes_by_hook: dict[str, np.ndarray], n_codes: int) -> dict[str, float]:
    """:func:`layer_stats` for every hook point, keys like ``codebook/code_perplexity/<hook>``."""
    out: dict[str, float] = {}
    for hook, codes in codes_by_hook.items():
        out.update(layer_stats(codes, n_codes, name=hook))
    return out


def per_code_table(codes: np.ndarray, n_codes: int, labels: np.ndarray | None = None) -> dict:
    """Per-code arrays: "usage" [n_codes] and, with integer ``labels`` [n_rows], the
    "label_entropy" (nats) of the labels of the rows a code fires on, the "majority" label
    and its share "purity" (NaN for unused codes)."""
    codes = np.asarray(codes).reshape(len(codes), -1)
    table = {"usage": code_usage(codes, n_codes)}
    if labels is None:
        return table
    labels = np.asarray(labels)
    if len(labels) != len(codes):
        raise ValueError(f"labels have {len(labels)} rows, codes have {len(codes)}")
    _, lab = np.unique(labels, return_inverse=True)
    n_lab = int(lab.max()) + 1
    joint = np.zeros((n_codes, n_lab))
    np.add.at(joint, (codes, np.repeat(lab[:, None], codes.shape[1], 1)), 1.0)
    total = joint.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = joint / total
        ent = -np.where(p > 0, p * np.log(p), 0.0).sum(1)
    used = total[:, 0] > 0
    table["label_entropy"] = np.where(used, ent, np.nan)
    table["majority"] = np.where(used, np.unique(labels)[joint.argmax(1)], -1)
    table["purity"] = np.where(used, joint.max(1) / np.maximum(total[:, 0], 1), np.nan)
    return table


def purity_nmi(assignments: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Purity (share of rows whose cluster's majority label is their own) and normalised
    mutual information (arithmetic mean normalisation) between a clustering and labels."""
    from sklearn.metrics import normalized_mutual_info_score

    a = np.asarray(assignments).reshape(len(labels), -1)[:, 0]
    labels = np.asarray(labels)
    _, ai = np.unique(a, return_inverse=True)
    _, li = np.unique(labels, return_inverse=True)
    joint = np.zeros((ai.max() + 1, li.max() + 1))
    np.add.at(joint, (ai, li), 1.0)
    return {
        "purity": float(joint.max(1).sum() / len(labels)),
        "nmi": float(normalized_mutual_info_score(li, ai)),
        "n_clusters_used": float(joint.shape[0]),
    }
