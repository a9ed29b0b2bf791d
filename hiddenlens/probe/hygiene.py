"""Probe hygiene: control tasks and selectivity, and MDL online-code probes.

- Control tasks (Hewitt & Liang 2019, "Designing and Interpreting Probes with Control
  Tasks"): every word *type* gets a random label drawn from the empirical distribution of
  the task's labels; a probe that scores well on it is memorising types, not reading a
  property from the representation.  Selectivity = task accuracy - control accuracy.
- Online code (Voita & Titov 2020, "Information-Theoretic Probing with Minimum Description
  Length"): the data (in a random order) is cut at 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25,
  12.5, 25, 50 and 100 % of its rows; the first block is sent with a uniform code
  (t_1 log2 K bits) and each later block with -sum log2 p(y|x) under a probe trained on all
  rows before it.  Compression = N log2 K / codelength.  All blocks' probes, for every
  layer, are fitted in one batched optimisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hiddenlens._keys import metric_key
from hiddenlens.probe._folds import resolve_groups
from hiddenlens.probe._solver import fit_batched, nll
from hiddenlens.probe.linear import check_labels
from hiddenlens.store.source import as_source, read_hooks, row_labels, select_hooks

VOITA_FRACTIONS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)


def control_task(types, labels, *, seed: int = 0) -> np.ndarray:
    """Control labels: one random label per type, drawn from the labels' empirical
    distribution (Hewitt & Liang 2019).  types, labels: arrays [n] aligned with rows."""
    types, labels = np.asarray(types), np.asarray(labels)
    if types.shape != labels.shape or types.ndim != 1:
        raise ValueError(f"types {types.shape} and labels {labels.shape} must be 1-D and aligned")
    classes, counts = np.unique(labels, return_counts=True)
    uniq, inv = np.unique(types, return_inverse=True)
    rng = np.random.default_rng(seed)
    per_type = rng.choice(len(classes), size=len(uniq), p=counts / counts.sum())
    return classes[per_type[inv]]


def selectivity(task, control) -> dict[str, float]:
    """``{"probe/{task.name}_selectivity/<hook>": task - control score}`` of two sweeps."""
    sel = task.selectivity(control)
    name = f"{task.name}_selectivity"
    return {metric_key("probe", name, h): float(s) for h, s in zip(task.hook_points, sel)}


def probe_with_control(store, labels, types, hook_points=None, *, seed: int = 0, **sweep_kw):
    """Sweep a task and its control task on the same folds; returns (task, control)."""
    from hiddenlens.probe.sweep import sweep

    rows = sweep_kw.get("rows")
    store = as_source(store)
    select_hooks(store, hook_points)  # a bad hook name fails before any fitting
    y = row_labels(store, labels, rows)
    t = row_labels(store, types, rows)
    name = sweep_kw.pop("name", None)
    task = sweep(store, y, hook_points, seed=seed, name=name, **sweep_kw)
    name = task.name
    ctrl = sweep(
        store,
        control_task(t, y, seed=seed),
        hook_points,
        seed=seed,
        name=f"{name}_control",
        **sweep_kw,
    )
    return task, ctrl


@dataclass
class MDLResult:
    """Online codelength per layer (bits), the uniform codelength and their ratio."""

    hook_points: list[str]
    codelength_bits: np.ndarray  # [L]
    uniform_bits: float
    block_bits: np.ndarray  # [L, S] bits spent on each block, the first one uniform
    block_ends: list[int]
    n_rows: int
    n_classes: int
    name: str = "mdl"
    grouping: str = "rows"  # how the transmission order was drawn: by row or by group

    @property
    def compression(self) -> np.ndarray:
        return self.uniform_bits / self.codelength_bits

    def to_metrics(self) -> dict[str, float]:
        """``probe/{name}_uniform_bits``, ``probe/{name}_codelength_bits/{hook}``, ...``"""
        out = {metric_key("probe", f"{self.name}_uniform_bits"): float(self.uniform_bits)}
        for i, h in enumerate(self.hook_points):
            out[metric_key("probe", f"{self.name}_codelength_bits", h)] = float(
                self.codelength_bits[i]
            )
            out[metric_key("probe", f"{self.name}_compression", h)] = float(self.compression[i])
        return out


def block_ends(n: int, fractions=VOITA_FRACTIONS) -> list[int]:
    """Row counts at which the online code's blocks end (strictly increasing, last = n)."""
    f = np.asarray(fractions, float)
    if f.ndim != 1 or len(f) < 2 or np.any(np.diff(f) <= 0) or f[0] <= 0 or f[-1] != 1.0:
        raise ValueError(f"fractions must increase strictly from > 0 to 1.0, got {fractions}")
    ends = sorted({max(1, int(round(x * n))) for x in f})
    if len(ends) < 2:
        raise ValueError(f"{n} rows are too few for an online code over {len(f)} blocks")
    return ends


def mdl_probe(
    store,
    labels,
    hook_points=None,
    *,
    fractions=VOITA_FRACTIONS,
    lam: float = 1.0,
    rows=None,
    groups="auto",
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-4,
    name: str = "mdl",
) -> MDLResult:
    """Online (prequential) codelength of ``labels`` given each layer, with linear probes.

    lam: L2 strength in the summed-loss scale (scikit-learn's 1 / C), so small early blocks
    are regularised more strongly than late ones, as a fixed prior should be. groups: as in
    ``sweep`` ("auto": token rows of one document are sent together, in a random order of
    documents, so a block is not coded by a probe that saw the same documents' other
    tokens; None: a random order of rows).
    """
    store = as_source(store)
    arrays = read_hooks(store, hook_points, rows)
    hooks = list(arrays)
    n = next(iter(arrays.values())).shape[0]
    y = row_labels(store, labels, rows)
    classes, enc = check_labels(y, n)
    K = len(classes)
    groups, grouping = resolve_groups(store, groups, y, rows)
    order = _transmission_order(n, groups, seed)
    enc = enc[order]
    ends = block_ends(n, fractions)
    P = len(ends) - 1
    blocks = np.zeros((len(hooks), P + 1))
    blocks[:, 0] = ends[0] * np.log2(K)
    by_d: dict[int, list[int]] = {}
    for i, h in enumerate(hooks):
        by_d.setdefault(arrays[h].shape[1], []).append(i)
    y_all = torch.from_numpy(enc)
    for idx in by_d.values():
        X = torch.from_numpy(
            np.stack([np.asarray(arrays[hooks[i]], np.float32)[order] for i in idx])
        )
        for p in range(P):
            # block p's probe sees only the rows before it: fit on that prefix alone (cheap
            # for the small early blocks, and each block gets its own conditioning)
            t, t_next = ends[p], ends[p + 1]
            fit = fit_batched(
                X[:, :t],
                y_all[:t],
                torch.ones(1, t),
                torch.tensor([lam / t]),
                n_outputs=1 if K == 2 else K,
                max_iter=max_iter,
                tol=tol,
                bias_alpha=1.0,
            )
            nll = _nll_bits(fit.logits(X[:, t:t_next]), y_all[t:t_next])  # [G, 1, rows]
            blocks[idx, p + 1] = nll[:, 0].sum(1)
    return MDLResult(hooks, blocks.sum(1), n * np.log2(K), blocks, ends, n, K, name, grouping)


def _transmission_order(n: int, groups, seed: int) -> np.ndarray:
    """A random order of the rows, or of the groups with each group's rows together."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.permutation(n)
    _, g = np.unique(groups, return_inverse=True)
    rank = rng.permutation(g.max() + 1)
    return np.argsort(rank[g], kind="stable")


def _nll_bits(Z: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """-log2 p(y | x) per row from logits Z [G, P, n, K]."""
    return nll(Z, y).numpy() / np.log(2)
