"""Opposing-signal detection from per-example loss trajectories.

After Rosenfeld & Risteski, "Outliers with Opposing Signals Have an Outsized Effect on
Neural Network Optimization" (ICLR 2024): a few groups of training examples carry strong
features that pull the network in opposite directions; their losses swing the most between
consecutive steps and move in opposition (one group's loss rises while the paired group's
falls). We track per-example losses, take the examples with the largest total loss change,
split them into two sides seeded by their most anti-correlated pair of loss-change series,
and score the pair by how anti-correlated the two sides' mean loss changes are.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from hiddenlens._keys import metric_key
from hiddenlens.shortcut.groups import check_groups


class LossTracker:
    """Records per-example losses over training steps. ``history`` is [n_steps, n_examples]."""

    def __init__(self, n_examples: int):
        if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
            raise ValueError(f"n_examples={n_examples!r}: must be an int >= 1")
        self.n_examples = n_examples
        self._rows: list[np.ndarray] = []
        self.steps: list[int] = []

    def record(self, losses, step: int | None = None) -> None:
        """Append one step's per-example losses [n_examples] (tensor or array)."""
        arr = losses.detach().cpu().numpy() if hasattr(losses, "detach") else np.asarray(losses)
        arr = np.asarray(arr, dtype=np.float64).reshape(-1)
        if arr.shape != (self.n_examples,):
            raise ValueError(f"losses have {arr.size} values; expected {self.n_examples}")
        self._rows.append(arr)
        self.steps.append(len(self.steps) if step is None else int(step))

    @property
    def history(self) -> np.ndarray:
        if not self._rows:
            return np.zeros((0, self.n_examples))
        return np.stack(self._rows)


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


class OpposingSignals(BaseEstimator):
    """Find paired groups of examples whose losses move in opposition.

    Parameters: ``top_k`` examples with the largest total |loss change| are the candidates;
    ``detrend`` removes the mean loss change over all examples at each step first (in
    full-batch training every loss falls together early on, which would mask opposition).
    Fitted: ``delta_`` [T-1, n] loss changes, ``scores_`` [n] total |change|,
    ``outliers_`` candidate indices, ``side_a_`` / ``side_b_`` the two opposing sides,
    ``opposition_`` = -corr(mean change of side a, mean change of side b) in [-1, 1]
    (1 = perfectly opposed). With ``groups`` given to fit: ``group_opposition_`` dict
    (g, h) -> -corr of the groups' mean loss-change series, ``group_pair_`` the most opposed.
    """

    def __init__(self, top_k: int = 20, detrend: bool = True):
        self.top_k = top_k
        self.detrend = detrend

    def fit(self, loss_history, groups=None) -> OpposingSignals:
        h = np.asarray(loss_history, dtype=np.float64)
        if h.ndim != 2 or h.shape[0] < 3:
            raise ValueError(
                f"loss_history has shape {h.shape}; expected [n_steps >= 3, n_examples]"
            )
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 2:
            raise ValueError(f"top_k={self.top_k!r}: must be an int >= 2")
        self.delta_ = np.diff(h, axis=0)
        if self.detrend:
            self.delta_ = self.delta_ - self.delta_.mean(axis=1, keepdims=True)
        self.scores_ = np.abs(self.delta_).sum(axis=0)
        k = min(self.top_k, h.shape[1])
        self.outliers_ = np.argsort(-self.scores_, kind="stable")[:k]
        c = np.corrcoef(self.delta_[:, self.outliers_].T)  # [k, k] change-series correlations
        c = np.nan_to_num(c, nan=0.0)
        # seed the two sides with the most anti-correlated pair; every other candidate joins
        # the seed its loss changes move with
        i, j = np.unravel_index(np.argmin(c), c.shape)
        to_a = c[:, i] >= c[:, j]
        to_a[i], to_a[j] = True, False
        self.side_a_ = self.outliers_[to_a]
        self.side_b_ = self.outliers_[~to_a]
        self.opposition_ = -_corr(
            self.delta_[:, self.side_a_].mean(axis=1), self.delta_[:, self.side_b_].mean(axis=1)
        )
        if groups is not None:
            self._fit_groups(check_groups(groups, h.shape[1]))
        return self

    def _fit_groups(self, g: np.ndarray) -> None:
        ids = np.unique(g)
        means = {int(k): self.delta_[:, g == k].mean(axis=1) for k in ids}
        self.group_opposition_ = {
            (a, b): -_corr(means[a], means[b])
            for i, a in enumerate(means)
            for b in list(means)[i + 1 :]
        }
        if self.group_opposition_:
            self.group_pair_ = max(self.group_opposition_, key=self.group_opposition_.get)

    def to_metrics(self) -> dict[str, float]:
        """Flat summary: "shortcut/opposition", "shortcut/opposing_n_a", ..., group pair."""
        check_is_fitted(self, "delta_")
        out = {
            metric_key("shortcut", "opposition"): float(self.opposition_),
            metric_key("shortcut", "opposing_n_a"): float(len(self.side_a_)),
            metric_key("shortcut", "opposing_n_b"): float(len(self.side_b_)),
        }
        if getattr(self, "group_pair_", None) is not None:
            a, b = self.group_pair_
            out[metric_key("shortcut", "opposing_group_a")] = float(a)
            out[metric_key("shortcut", "opposing_group_b")] = float(b)
            opp = float(self.group_opposition_[self.group_pair_])
            out[metric_key("shortcut", "group_opposition")] = opp
        return out
