"""Interpretability table and the two failure-mode flags of Makelov, Lange & Nanda 2024.

"Towards Principled Evaluations of Sparse Autoencoders for Interpretability and Control"
names two ways an SAE misrepresents a known attribute:

* feature over-splitting: one binary attribute value is spread over many latents, each
  covering a slice of its rows. Flag: the number of latents whose union ("any of them
  active") is needed to detect the value with F1 >= 0.9, chosen greedily, is > 1.
* feature occlusion: the latent that does detect the value (high precision) rarely fires,
  because on most of the value's rows a larger-norm latent that belongs to a correlated
  attribute wins the sparse competition (TopK / L1) and takes its place.

All functions take codes [n, m] of any dictionary (active = code > 0) and labels
attribute -> [n] values, and return flat rows for a report table.
"""

from __future__ import annotations

import numpy as np

from hiddenlens.sae.principled import check_labels
from hiddenlens.sae.supervised import interpretability


def _value(v):
    return v.item() if hasattr(v, "item") else v


def _f1(tp, fires, pos):
    return 2 * tp / np.maximum(fires + pos, 1)


def interpretability_table(codes, labels) -> list[dict]:
    """Best single latent per attribute value with F1, precision, recall and AUROC."""
    codes = np.asarray(codes)
    check_labels(labels, len(codes))
    return interpretability(codes, labels)


def latents_to_f1(active: np.ndarray, y: np.ndarray, target: float = 0.9, max_latents: int = 16):
    """Greedy union of latents (OR of active) maximising F1 for binary ``y``.

    Returns (n_needed or None, F1 after each added latent, the chosen latents).
    """
    union = np.zeros(len(y), bool)
    pos, f1s, chosen = int(y.sum()), [], []
    for _ in range(min(max_latents, active.shape[1])):
        cand = union[:, None] | active
        f1 = _f1(cand[y].sum(0), cand.sum(0), pos)
        f1[chosen] = -1.0
        j = int(f1.argmax())
        if f1s and f1[j] <= f1s[-1]:
            break  # no latent improves the union any more
        chosen.append(j)
        f1s.append(float(f1[j]))
        union = cand[:, j]
        if f1s[-1] >= target:
            return len(chosen), f1s, chosen
    return None, f1s, chosen


def over_splitting_flags(codes, labels, *, target_f1: float = 0.9, max_latents: int = 16):
    """Per attribute value: latents needed for F1 >= target_f1; flag when more than one."""
    codes = np.asarray(codes)
    lab = check_labels(labels, len(codes))
    active = codes > 0
    rows = []
    for a, y_all in lab.items():
        for v in np.unique(y_all):
            y = y_all == v
            n, f1s, chosen = latents_to_f1(active, y, target_f1, max_latents)
            rows.append(
                {
                    "attribute": a,
                    "value": _value(v),
                    "latents_to_f1": n,
                    "best_single_f1": f1s[0] if f1s else 0.0,
                    "union_f1": f1s[-1] if f1s else 0.0,
                    "latents": chosen[: n or len(chosen)],
                    "over_split": bool(n is not None and n > 1),
                }
            )
    return rows


def _owners(active: np.ndarray, pairs: list[tuple[str, object, np.ndarray]]) -> np.ndarray:
    """Index into ``pairs`` of the (attribute, value) each latent matches best by F1
    (-1 for latents that never fire)."""
    fires = active.sum(0)
    f1 = np.stack([_f1(active[y].sum(0), fires, y.sum()) for _, _, y in pairs])
    return np.where(fires > 0, f1.argmax(0), -1)


def _occlusion_row(p, pairs, owners, active, contrib, min_precision, max_recall) -> dict:
    y = pairs[p][2]
    fires, tp = active.sum(0), active[y].sum(0)
    prec, rec = tp / np.maximum(fires, 1), tp / max(int(y.sum()), 1)
    cand = np.where((prec >= min_precision) & (tp > 0))[0]
    row = {"detector": None, "detector_recall": 0.0, "own_recall": 0.0, "occluder": None,
           "occluder_covers": None, "occluder_share": 0.0, "norm_ratio": float("nan"),
           "occluded": False}  # fmt: skip
    own = np.where(owners == p)[0]
    row["own_recall"] = float(rec[own].max()) if own.size else 0.0
    if cand.size == 0:
        return row
    best = int(cand[rec[cand].argmax()])
    row.update(detector=best, detector_recall=float(rec[best]))
    silent = y & ~active[:, best]
    # represented: the precise detector, or a latent of the value's own, fires broadly
    if max(rec[best], row["own_recall"]) > max_recall or not silent.any():
        return row
    share = active[silent].mean(0)
    share[best] = 0.0
    occ = int(share.argmax())
    mag_best = contrib[active[:, best], best].mean()
    mag_occ = contrib[silent & active[:, occ], occ].mean() if share[occ] > 0 else 0.0
    other = owners[occ] not in (-1, p)
    row.update(
        occluder=occ,
        occluder_covers=f"{pairs[owners[occ]][0]}={pairs[owners[occ]][1]}" if other else None,
        occluder_share=float(share[occ]),
        norm_ratio=float(mag_occ / mag_best) if mag_best > 0 else float("inf"),
        occluded=bool(share[occ] >= 0.5 and other and mag_occ > mag_best),
    )
    return row


def occlusion_flags(
    codes, labels, *, decoder_norms=None, min_precision: float = 0.9, max_recall: float = 0.5
) -> list[dict]:
    """Per attribute value: is its detector latent occluded?

    Each latent is owned by the (attribute, value) it matches best by F1. detector: the
    latent with precision >= min_precision and the highest recall for the value. Flag
    (``occluded``) when the detector fires on at most ``max_recall`` of the value's rows, no
    latent the value owns fires more broadly, and on at least half of the rows where the
    detector is silent one latent owned by another attribute value (``occluder_covers``)
    fires with a larger contribution ``code * ||decoder row||`` than the detector's.
    """
    codes = np.asarray(codes, dtype=np.float64)
    lab = check_labels(labels, len(codes))
    norms = np.ones(codes.shape[1]) if decoder_norms is None else np.asarray(decoder_norms)
    if norms.shape != (codes.shape[1],):
        raise ValueError(f"decoder_norms has shape {norms.shape}; expected ({codes.shape[1]},)")
    active, contrib = codes > 0, np.abs(codes) * norms
    pairs = [(a, _value(v), y == v) for a, y in lab.items() for v in np.unique(y)]
    owners = _owners(active, pairs)
    return [
        {"attribute": a, "value": v,
         **_occlusion_row(p, pairs, owners, active, contrib, min_precision, max_recall)}
        for p, (a, v, _) in enumerate(pairs)
    ]  # fmt: skip
