"""Code search: which codes fire for a property, and how a single neuron compares.

"Codebook Features" (Tamkin, Taufeeque & Goodman, 2023) finds interpretable codes by
searching for codes whose activations coincide with a property of the text (a regular
expression, a token set, a label) and reports per-code precision and recall. As a
baseline the same property is predicted from the *best single neuron* of the raw
activation with the best threshold (either sign), scored by F1.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from hiddenlens._keys import metric_key
from hiddenlens.codebook.stats import code_usage


@dataclass
class CodeMatch:
    """One code's agreement with a property (rows are tokens)."""

    code: int
    precision: float
    recall: float
    f1: float
    n_fired: int
    n_hits: int

    def to_dict(self) -> dict:
        return asdict(self)


def regex_mask(strings: Sequence[str], pattern: str) -> np.ndarray:
    """Bool [n]: rows whose string (e.g. the token text) matches ``pattern`` (re.search)."""
    rx = re.compile(pattern)
    return np.fromiter((rx.search(s) is not None for s in strings), bool, len(strings))


def token_set_mask(token_ids: np.ndarray, token_set: Iterable[int]) -> np.ndarray:
    """Bool [n]: rows whose token id is in ``token_set``."""
    return np.isin(np.asarray(token_ids), np.fromiter(token_set, np.int64))


def _code_counts(codes: np.ndarray, mask: np.ndarray, n_codes: int):
    codes = np.asarray(codes).reshape(len(mask), -1)
    # A row counts once per code even if a code were listed twice in it.
    fired = code_usage(codes, n_codes)
    hits = np.bincount(codes[mask].reshape(-1), minlength=n_codes)
    return fired, hits


def search_codes(
    codes: np.ndarray,
    mask: np.ndarray,
    n_codes: int,
    *,
    top: int = 10,
    sort_by: str = "f1",
    min_fired: int = 1,
) -> list[CodeMatch]:
    """Codes most associated with the rows where ``mask`` [n] is True.

    codes: int [n, k]. Returns up to ``top`` CodeMatch sorted by ``sort_by``
    ("f1" | "precision" | "recall"), among codes fired at least ``min_fired`` times.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 1 or len(mask) != len(codes):
        raise ValueError(f"mask must be bool [n={len(codes)}], got shape {mask.shape}")
    if sort_by not in ("f1", "precision", "recall"):
        raise ValueError(f"sort_by={sort_by!r}; accepted: 'f1', 'precision', 'recall'")
    n_pos = int(mask.sum())
    if n_pos == 0:
        raise ValueError("the property holds on no row; nothing to search for")
    fired, hits = _code_counts(codes, mask, n_codes)
    precision = hits / np.maximum(fired, 1)
    recall = hits / n_pos
    f1 = 2 * hits / np.maximum(fired + n_pos, 1)
    key = {"f1": f1, "precision": precision, "recall": recall}[sort_by]
    order = [c for c in np.argsort(-key, kind="stable") if fired[c] >= min_fired][:top]
    return [
        CodeMatch(
            int(c), float(precision[c]), float(recall[c]), float(f1[c]), int(fired[c]), int(hits[c])
        )
        for c in order
    ]


def best_code_f1(codes: np.ndarray, labels: np.ndarray, n_codes: int) -> dict[str, np.ndarray]:
    """For each distinct label value: the single code with the highest F1 at predicting it.

    Returns {"labels", "code", "f1", "precision", "recall"} arrays over the label values.
    """
    labels = np.asarray(labels)
    values = np.unique(labels)
    res = {"labels": values, "code": [], "f1": [], "precision": [], "recall": []}
    for v in values:
        m = search_codes(codes, labels == v, n_codes, top=1)[0]
        for key in ("code", "f1", "precision", "recall"):
            res[key].append(getattr(m, key))
    return {k: np.asarray(v) for k, v in res.items()}


def best_neuron_f1(
    acts: np.ndarray, targets: np.ndarray, *, chunk: int = 32
) -> dict[str, np.ndarray]:
    """Best single neuron and threshold for each target column, by F1.

    acts: float [n, d]; targets: bool [n] or [n, C]. Every neuron is thresholded at every
    cut point between distinct values, firing above (sign +1) or below (sign -1) it.
    Returns arrays over C: "f1", "neuron", "sign", "threshold", "precision", "recall".
    """
    acts = np.asarray(acts, dtype=np.float32)
    t = np.asarray(targets, dtype=bool)
    t = t[:, None] if t.ndim == 1 else t
    if acts.ndim != 2 or len(acts) != len(t):
        raise ValueError(f"acts must be [n, d] with n={len(t)}, got {acts.shape}")
    n_pos = t.sum(0).astype(np.float64)  # [C]
    best = {k: np.full(t.shape[1], np.nan) for k in ("threshold", "precision", "recall")}
    best.update(
        f1=np.full(t.shape[1], -1.0),
        neuron=np.zeros(t.shape[1], int),
        sign=np.ones(t.shape[1], int),
    )
    tf = t.astype(np.float32)
    for start in range(0, acts.shape[1], chunk):
        block = acts[:, start : start + chunk]
        for sign in (1, -1):
            for j in range(block.shape[1]):
                _update(best, sign * block[:, j], tf, n_pos, start + j, sign)
    return best


def _update(best: dict, values: np.ndarray, tf: np.ndarray, n_pos, neuron: int, sign: int):
    order = np.argsort(-values, kind="stable")
    v = values[order]
    tp = np.cumsum(tf[order], axis=0)  # [n, C]: true positives when firing on the top i+1
    n_fired = np.arange(1, len(v) + 1, dtype=np.float64)[:, None]
    cut = np.r_[v[:-1] != v[1:], True]  # only cut between distinct values
    f1 = np.where(cut[:, None], 2 * tp / (n_fired + n_pos), -1.0)
    i = f1.argmax(0)  # [C]
    cols = np.arange(tf.shape[1])
    f = f1[i, cols]
    better = f > best["f1"]
    best["f1"][better] = f[better]
    best["neuron"][better] = neuron
    best["sign"][better] = sign
    best["threshold"][better] = sign * v[i][better]
    best["precision"][better] = (tp[i, cols] / n_fired[i, 0])[better]
    best["recall"][better] = (tp[i, cols] / np.maximum(n_pos, 1))[better]


def compare_with_neurons(
    codes: np.ndarray, acts: np.ndarray, mask: np.ndarray, n_codes: int, *, name: str = ""
) -> dict[str, float]:
    """F1 / precision / recall of the best code and the best single neuron for a property,
    as ``codebook/<code|neuron>_<f1|precision|recall>[/<name>]``."""
    m = search_codes(codes, mask, n_codes, top=1)[0]
    nb = best_neuron_f1(acts, mask)
    out = {
        "code_f1": m.f1,
        "code_precision": m.precision,
        "code_recall": m.recall,
        "neuron_f1": float(nb["f1"][0]),
        "neuron_precision": float(nb["precision"][0]),
        "neuron_recall": float(nb["recall"][0]),
    }
    return {metric_key("codebook", k, name or None): v for k, v in out.items()}
