"""Structural probes (Hewitt & Manning 2019, "A Structural Probe for Finding Syntax in Word
Representations"; the AST-Probe of Hernández López et al. 2022 applies it to code).

A low-rank linear map ``B [rank, d]`` is trained so that squared distances in its image
match tree distances, ``||B (h_i - h_j)||^2 ~ d_tree(i, j)`` (the *distance* probe), or so
that squared norms match tree depth, ``||B h_i||^2 ~ depth(i)`` (the *depth* probe).  The
loss is Hewitt & Manning's: the L1 difference per pair (per word), divided by the number of
pairs (words) of the sentence, averaged over sentences.  Evaluation follows the paper:

- ``spearman``: per sentence and word, the Spearman correlation between predicted and gold
  distances to every other word (or, for depth, over the words of a sentence), averaged
  per sentence length and then over lengths (the paper's "DSpr." / "NSpr."),
- ``uuas``: undirected unlabelled attachment score of the minimum spanning tree of the
  predicted distances against the gold tree's edges,
- ``root_accuracy``: how often the word with the smallest predicted depth is the root.

Sentences are lists of arrays ``[len_s, d]`` with their trees as parent arrays (``-1`` at
the root); ``tree_distances`` turns a parent array into the distance matrix.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from hiddenlens._keys import metric_key

KINDS = ("distance", "depth")


def tree_distances(parents) -> np.ndarray:
    """Path lengths [n, n] between the nodes of a tree given as a parent array (-1: root)."""
    parents = np.asarray(parents, np.int64)
    n = len(parents)
    roots = np.flatnonzero(parents < 0)
    if parents.ndim != 1 or len(roots) != 1 or np.any(parents >= n):
        raise ValueError(f"parents must be a 1-D parent array with one root (-1), got {parents}")
    nbrs: list[list[int]] = [[] for _ in range(n)]
    for i, p in enumerate(parents):
        if p >= 0:
            nbrs[i].append(int(p))
            nbrs[int(p)].append(i)
    out = np.full((n, n), -1, np.int64)
    for s in range(n):
        out[s, s] = 0
        queue = deque([s])
        while queue:
            u = queue.popleft()
            for v in nbrs[u]:
                if out[s, v] < 0:
                    out[s, v] = out[s, u] + 1
                    queue.append(v)
    if np.any(out < 0):
        raise ValueError("parents do not form a connected tree (a cycle or a second component)")
    return out


def tree_depths(parents) -> np.ndarray:
    """Depth [n] of every node (root 0)."""
    parents = np.asarray(parents, np.int64)
    return tree_distances(parents)[int(np.flatnonzero(parents < 0)[0])]


class StructuralProbe(BaseEstimator):
    """Distance or depth structural probe (Hewitt & Manning 2019), trained with Adam.

    Parameters: kind ("distance" or "depth"), rank (of ``B``), n_steps (full-batch Adam
    steps), lr, seed.  ``fit(sentences, parents)``: lists of arrays [len_s, d] and parent
    arrays.  Learned: ``B_`` [rank, d], ``loss_`` (final training loss).
    """

    def __init__(self, kind="distance", rank=64, n_steps=300, lr=0.01, seed=0):
        self.kind = kind
        self.rank = rank
        self.n_steps = n_steps
        self.lr = lr
        self.seed = seed

    def fit(self, sentences, parents) -> StructuralProbe:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if int(self.rank) < 1 or int(self.n_steps) < 1 or not self.lr > 0:
            raise ValueError(
                f"rank and n_steps must be >= 1 and lr > 0, got {self.rank}, {self.n_steps}, "
                f"{self.lr}"
            )
        H, T, mask = _padded(*_check(sentences, parents, self.kind))
        d = H.shape[-1]
        gen = torch.Generator().manual_seed(int(self.seed))
        B = torch.nn.Parameter(torch.randn(int(self.rank), d, generator=gen) / d**0.5)
        opt = torch.optim.Adam([B], lr=float(self.lr))
        for _ in range(int(self.n_steps)):
            loss = _loss(B, H, T, mask, self.kind)
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.B_ = B.detach()
        self.n_features_in_ = d
        self.loss_ = float(loss.detach())
        return self

    def predict(self, sentences) -> list[np.ndarray]:
        """Predicted squared distances [len_s, len_s] (distance) or depths [len_s] per sentence."""
        check_is_fitted(self, "B_")
        out = []
        for h in sentences:
            z = torch.as_tensor(np.asarray(h), dtype=torch.float32) @ self.B_.T
            if self.kind == "distance":
                out.append((torch.cdist(z, z) ** 2).numpy())
            else:
                out.append((z * z).sum(-1).numpy())
        return out

    def evaluate(self, sentences, parents, name: str = "structural") -> StructuralResult:
        """Spearman (averaged by sentence length), UUAS (distance) or root accuracy (depth)."""
        return score_structure(self.kind, self.predict(sentences), parents, name)


def score_structure(kind, pred, parents, name: str = "structural") -> StructuralResult:
    """Score predicted distances [len_s, len_s] or depths [len_s] per sentence against trees.

    The probe's own ``evaluate``, open to any prediction, so baselines (the right-branching
    chain's ``|i - j|``, word position as depth) are scored by exactly the same metrics.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    parents = [np.asarray(p) for p in parents]
    pred = [np.asarray(a, np.float64) for a in pred]
    if not parents:  # every score would be a mean over nothing: NaN and a RuntimeWarning
        raise ValueError("need at least one tree to score, got none")
    want = [(len(p), len(p)) if kind == "distance" else (len(p),) for p in parents]
    if len(pred) != len(parents) or any(a.shape != w for a, w in zip(pred, want)):
        raise ValueError(
            f"need one prediction per tree shaped {'[n, n]' if kind == 'distance' else '[n]'}, "
            f"got shapes {[a.shape for a in pred][:5]} for trees of {[len(p) for p in parents][:5]}"
        )
    if kind == "distance":
        gold = [tree_distances(p) for p in parents]
        rho = _by_length([_rowwise_spearman(a, b) for a, b in zip(pred, gold)], gold)
        return StructuralResult(kind, rho, _uuas(pred, parents), None, len(pred), name)
    gold = [tree_depths(p) for p in parents]
    rho = _by_length([_spearman(a, b) for a, b in zip(pred, gold)], gold)
    root = float(np.mean([int(np.argmin(a)) == int(np.argmin(b)) for a, b in zip(pred, gold)]))
    return StructuralResult(kind, rho, None, root, len(pred), name)


@dataclass
class StructuralResult:
    kind: str
    spearman: float
    uuas: float | None
    root_accuracy: float | None
    n_sentences: int
    name: str = "structural"

    def to_metrics(self, hook: str | None = None) -> dict[str, float]:
        out = {metric_key("probe", f"{self.name}_{self.kind}_spearman", hook): self.spearman}
        if self.uuas is not None:
            out[metric_key("probe", f"{self.name}_uuas", hook)] = self.uuas
        if self.root_accuracy is not None:
            out[metric_key("probe", f"{self.name}_root_accuracy", hook)] = self.root_accuracy
        return out


def _check(sentences, parents, kind):
    if len(sentences) != len(parents) or not len(sentences):
        raise ValueError(
            f"need as many parent arrays as sentences (> 0), got {len(sentences)} and "
            f"{len(parents)}"
        )
    H, T = [], []
    for i, (h, p) in enumerate(zip(sentences, parents)):
        h = np.asarray(h, np.float32)
        if h.ndim != 2 or h.shape[0] != len(p):
            raise ValueError(
                f"sentence {i}: activations {h.shape} must be [len, d] with len = {len(p)} "
                "(one parent per word)"
            )
        H.append(torch.from_numpy(h))
        t = tree_distances(p) if kind == "distance" else tree_depths(p)
        T.append(torch.as_tensor(t, dtype=torch.float32))
    if len({h.shape[1] for h in H}) != 1:
        raise ValueError(f"sentences have different widths: {sorted({h.shape[1] for h in H})}")
    return H, T


def _padded(H, T):
    """Sentences padded to one batch: H [S, L, d], T [S, L, L] or [S, L], mask [S, L]."""
    S, L = len(H), max(len(h) for h in H)
    Hp = torch.zeros(S, L, H[0].shape[1])
    Tp = torch.zeros((S, L, L) if T[0].ndim == 2 else (S, L))
    mask = torch.zeros(S, L)
    for i, (h, t) in enumerate(zip(H, T)):
        n = len(h)
        Hp[i, :n] = h
        if t.ndim == 2:
            Tp[i, :n, :n] = t
        else:
            Tp[i, :n] = t
        mask[i, :n] = 1.0
    return Hp, Tp, mask


def _loss(B, H, T, mask, kind):
    """Hewitt & Manning's L1 loss, per sentence normalised by its pairs (words), averaged."""
    z = H @ B.T  # [S, L, r]
    n = mask.sum(1)
    if kind == "distance":
        sq = (z * z).sum(-1)
        dist = sq[:, :, None] + sq[:, None, :] - 2 * z @ z.transpose(1, 2)
        pair = mask[:, :, None] * mask[:, None, :]
        return ((dist - T).abs() * pair).sum((1, 2)).div(n * n).mean()
    return (((z * z).sum(-1) - T).abs() * mask).sum(1).div(n).mean()


def _spearman(a, b) -> float:
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(b) == 0:
        return float("nan")  # nothing to rank against: left out of the average
    if np.ptp(a) == 0:
        return 0.0  # the probe ranks nothing (e.g. tokens sharing one vector): no correlation
    return float(spearmanr(a, b).statistic)


def _rowwise_spearman(pred, gold) -> float:
    """Mean over words of the Spearman correlation of their distances to the other words."""
    n = len(gold)
    rows = [_spearman(np.delete(pred[i], i), np.delete(gold[i], i)) for i in range(n)]
    return float(np.nanmean(rows)) if np.isfinite(rows).any() else float("nan")


def _by_length(values, gold) -> float:
    """Average within each sentence length, then over lengths (as the paper reports)."""
    by: dict[int, list[float]] = {}
    for v, g in zip(values, gold):
        if np.isfinite(v):
            by.setdefault(len(g), []).append(v)
    return float(np.mean([np.mean(v) for v in by.values()])) if by else float("nan")


def _uuas(pred, parents) -> float:
    """Fraction of gold edges recovered by the predicted distances' minimum spanning tree."""
    from scipy.sparse.csgraph import minimum_spanning_tree

    hit = total = 0
    for d, p in zip(pred, parents):
        n = len(p)
        if n < 2:
            continue
        mst = minimum_spanning_tree(np.triu(d + 1e-9, 1)).tocoo()  # +eps: zero means no edge
        found = {frozenset((int(i), int(j))) for i, j in zip(mst.row, mst.col)}
        gold = {frozenset((i, int(q))) for i, q in enumerate(p) if q >= 0}
        hit += len(found & gold)
        total += n - 1
    return hit / total if total else float("nan")
