"""The minimal set of dictionary latents to edit so the model's output follows an attribute.

Makelov, Lange & Nanda 2024, "Towards Principled Evaluations of Sparse Autoencoders for
Interpretability and Control", sparse controllability: to change attribute a from v to v'
on an item, take the dictionary codes z of the item and z' of its counterfactual (the same
item with a = v'), and copy latents of z' into z one at a time, greedily, until the model
run on the edited activation ``decode(z_S <- z'_S) + (x - decode(z))`` (the dictionary's
error term is kept) follows v'. The metric is the size of that set (a good dictionary edits
an attribute with few latents) and a curve of edit success against the number of latents.

Two greedy orders:

* ``rank_by="output"``: at each step the latent whose copy moves the model's output score
  (default: logit(answer under v') - logit(answer under v)) the most; exact, one batched
  model run per candidate slot and step.
* ``rank_by="distance"``: the latent whose copy brings decode(z) closest to decode(z')
  (the paper's edit-distance search; no model runs while ranking), then the model is run
  after each of the first k edits.

Candidates are the latents where z and z' differ. ``sizes[q]`` is the number of latents
after which item q first follows v' (0: it already did; -1: not within ``max_latents``),
an upper bound on the minimal set that the greedy search attains on a planted dictionary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

from hiddenlens._keys import metric_key
from hiddenlens.sae.principled import SpliceTask, check_labels, run_patched, task_activations
from hiddenlens.sae.principled_adapters import _np, _t

__all__ = ["EditSearchConfig", "EditSearchResult", "minimal_edit_search"]

RANKINGS = ("output", "distance")


@dataclass
class EditSearchConfig:
    """max_latents: the largest set tried. rank_by: "output" or "distance" (module
    docstring). threshold: share of items that must follow v' for ``min_latents``.
    tol: codes closer than this count as equal (not a candidate)."""

    max_latents: int = 16
    rank_by: str = "output"
    threshold: float = 0.9
    tol: float = 1e-6

    def __post_init__(self):
        if self.max_latents < 1:
            raise ValueError(f"max_latents must be >= 1, got {self.max_latents}")
        if self.rank_by not in RANKINGS:
            raise ValueError(f"rank_by must be one of {RANKINGS}, got {self.rank_by!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.tol < 0:
            raise ValueError(f"tol must be >= 0, got {self.tol}")


@dataclass
class EditSearchResult:
    """sizes: [n] latents edited when item q first follows v' (0 already, -1 never within
    max_latents). order: the latents chosen per item, in order. n_candidates: [n] latents
    where the item's codes and its counterfactual's differ. success_full: share that
    follows v' when every differing latent is copied (the dictionary's ceiling)."""

    sizes: np.ndarray
    order: list[list[int]]
    n_candidates: np.ndarray
    success_full: float
    config: EditSearchConfig

    def success_curve(self) -> np.ndarray:
        """[max_latents + 1]: share of items that follow v' with at most k latents edited."""
        ks = np.arange(self.config.max_latents + 1)
        ok = self.sizes >= 0
        return ((self.sizes[None, :] <= ks[:, None]) & ok[None, :]).mean(1)

    def min_latents(self, threshold: float | None = None) -> int | None:
        """Smallest k whose success reaches ``threshold`` (default: the config's); None if
        no k up to max_latents does."""
        t = self.config.threshold if threshold is None else threshold
        hit = np.where(self.success_curve() >= t)[0]
        return int(hit[0]) if hit.size else None

    def summary(self) -> dict:
        """One table row: min_latents, mean / median set size over the items that follow
        v', success at max_latents, the full-copy ceiling, mean candidates, the curve."""
        flipped = self.sizes[self.sizes >= 0]
        return {
            "rank_by": self.config.rank_by,
            "min_latents": self.min_latents(),
            "mean_set_size": float(flipped.mean()) if flipped.size else None,
            "median_set_size": float(np.median(flipped)) if flipped.size else None,
            "success_at_max": float(self.success_curve()[-1]),
            "success_full": self.success_full,
            "mean_candidates": float(self.n_candidates.mean()),
            "curve": self.success_curve().tolist(),
        }

    def to_metrics(self, where: str | None = None) -> dict[str, float]:
        """sae/edit_search_{min_latents,mean_set_size,success_at_max,success_full}."""
        k = self.min_latents()
        flipped = self.sizes[self.sizes >= 0]
        out = {
            "min_latents": float("nan") if k is None else float(k),
            "mean_set_size": float(flipped.mean()) if flipped.size else float("nan"),
            "success_at_max": float(self.success_curve()[-1]),
            "success_full": self.success_full,
        }
        return {metric_key("sae", f"edit_search_{m}", where): v for m, v in out.items()}


def _default_score(task: SpliceTask, labels_cf) -> Callable:
    if task.answer is None:
        raise ValueError("minimal_edit_search needs task.answer or a score= function")
    old = torch.as_tensor(np.asarray(task.answer(task.labels)))
    new = torch.as_tensor(np.asarray(task.answer(labels_cf)))
    same = int((old == new).sum())
    if same:
        raise ValueError(
            f"the answer does not change on {same} of {len(old)} items under the "
            "counterfactual labels; pass only items whose answer the edit changes"
        )

    def score(logits, idx):
        rows = torch.arange(len(idx))
        return logits[rows, new[idx]] - logits[rows, old[idx]]

    return score


class _Search:
    """State of one search: codes, error term, the items still searching, the model runs."""

    def __init__(self, dictionary, model, task, z, z_cf, err, score):
        self.dictionary, self.model, self.task = dictionary, model, task
        self.z, self.z_cf, self.err, self.score = z, z_cf, err, score

    def rows(self, codes: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Edited activations decode(codes) + error term for items ``idx``."""
        return self.dictionary.decode(_t(codes)).numpy() + self.err[idx]

    def scores(self, codes: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """[len(idx)] output score of items ``idx`` run with their codes set to ``codes``."""
        if len(idx) == 0:
            return np.zeros(0)
        sub = replace(
            self.task,
            inputs=self.task.inputs[torch.as_tensor(idx)],
            labels={a: y[idx] for a, y in self.task.labels.items()},
        )
        logits = run_patched(self.model, sub, self.rows(codes, idx))
        return _np(self.score(logits, torch.as_tensor(idx))).astype(np.float64)


def _greedy_output(s: _Search, cand: np.ndarray, cfg: EditSearchConfig):
    """Per step, per candidate slot: one model run; keep the best latent of each item."""
    n = len(s.z)
    cur, sizes = s.z.copy(), np.full(n, -1)
    order: list[list[int]] = [[] for _ in range(n)]
    sizes[s.scores(cur, np.arange(n)) > 0] = 0
    left = cand.copy()
    for step in range(1, cfg.max_latents + 1):
        active = np.where((sizes < 0) & left.any(1))[0]
        if not active.size:
            break
        best = np.full(len(active), -np.inf)
        pick = np.full(len(active), -1)
        for c in range(int(left[active].sum(1).max())):
            # slot c: the c-th remaining candidate of each item that has one
            has = left[active].sum(1) > c
            items = active[has]
            lat = np.argsort(~left[items], axis=1, kind="stable")[:, c]
            trial = cur[items].copy()
            trial[np.arange(len(items)), lat] = s.z_cf[items, lat]
            sc = s.scores(trial, items)
            better = sc > best[has]
            where = np.where(has)[0][better]
            best[where], pick[where] = sc[better], lat[better]
        cur[active, pick] = s.z_cf[active, pick]
        left[active, pick] = False
        for q, p in zip(active.tolist(), pick.tolist()):
            order[q].append(p)
        sizes[active[best > 0]] = step
    return sizes, order


def _greedy_distance(s: _Search, cand: np.ndarray, cfg: EditSearchConfig):
    """Order each item's candidates by the distance decode(z) -> decode(z'), then run the
    model after each of the first k edits."""
    n, target = len(s.z), s.dictionary.decode(_t(s.z_cf)).numpy()
    cur, left = s.z.copy(), cand.copy()
    order: list[list[int]] = [[] for _ in range(n)]
    sizes = np.full(n, -1)
    sizes[s.scores(cur, np.arange(n)) > 0] = 0
    for step in range(1, cfg.max_latents + 1):
        active = np.where(left.any(1))[0]
        if not active.size:
            break
        best, pick = np.full(len(active), np.inf), np.full(len(active), -1)
        for lat in np.where(left[active].any(0))[0]:
            has = left[active, lat]
            trial = cur[active[has]].copy()
            trial[:, lat] = s.z_cf[active[has], lat]
            dist = ((s.dictionary.decode(_t(trial)).numpy() - target[active[has]]) ** 2).sum(1)
            better = dist < best[has]
            where = np.where(has)[0][better]
            best[where], pick[where] = dist[better], lat
        cur[active, pick] = s.z_cf[active, pick]
        left[active, pick] = False
        for q, p in zip(active.tolist(), pick.tolist()):
            order[q].append(p)
        fresh = active[sizes[active] < 0]
        sizes[fresh[s.scores(cur[fresh], fresh) > 0]] = step
    return sizes, [o[: sz if sz >= 0 else len(o)] for o, sz in zip(order, sizes)]


def minimal_edit_search(
    dictionary,
    model,
    task: SpliceTask,
    counterfactual: tuple,
    config: EditSearchConfig | None = None,
    *,
    x=None,
    score: Callable | None = None,
) -> EditSearchResult:
    """Greedy search, per item, for the fewest latents to copy from the counterfactual's codes.

    counterfactual: (x_cf [n, d], labels_cf attribute -> [n]) — the activations at
    ``task.hook`` of the counterfactual items and their labels (the edited attribute has
    its new value; encoders that read labels, like the supervised one, get them). x: the
    items' activations (default: read from ``task``). score(logits [b, vocab], idx [b]) ->
    [b]: > 0 when item idx follows v' (default: from ``task.answer``).
    """
    cfg = config or EditSearchConfig()
    x_cf, labels_cf = counterfactual
    x = task_activations(model, task) if x is None else _np(x).astype(np.float32)
    x_cf = _np(x_cf).astype(np.float32)
    if x.shape != x_cf.shape or len(x) != len(task.inputs):
        raise ValueError(
            f"x {x.shape} and x_cf {x_cf.shape} must both hold one row per task item "
            f"({len(task.inputs)})"
        )
    labels_cf = check_labels(labels_cf, len(x))
    z = _np(dictionary.encode(_t(x), task.labels)).astype(np.float32)
    z_cf = _np(dictionary.encode(_t(x_cf), labels_cf)).astype(np.float32)
    err = x - dictionary.decode(_t(z)).numpy()
    s = _Search(dictionary, model, task, z, z_cf, err, score or _default_score(task, labels_cf))
    cand = np.abs(z - z_cf) > cfg.tol  # [n, m]
    full = float((s.scores(z_cf, np.arange(len(x))) > 0).mean())
    search = _greedy_output if cfg.rank_by == "output" else _greedy_distance
    sizes, order = search(s, cand, cfg)
    return EditSearchResult(sizes, order, cand.sum(1), full, cfg)
