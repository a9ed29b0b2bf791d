"""ChaosMining: attribution under low signal-to-noise, with known relevant features.

Shi, Kan, Smucny & Davidson, "ChaosMining: A Benchmark to Evaluate Post-Hoc Local Attribution
Methods in Low SNR Environments" (2024), code ``geshijoker/ChaosMining``. Symbolic-functional
data: every input has ``n_relevant`` features that determine the target through a closed-form
function and ``n_noise`` irrelevant ones drawn from the same distribution; the signal-to-noise
ratio falls as irrelevant features are added (and as label noise grows). A model is trained per
noise level and each attribution method is scored by the share of the top-k features by
``|attribution|`` (k = the number of relevant features) that are truly relevant — the paper's
top-features score, equal to recall at k. Chance is ``n_relevant / n_features``.

Features: ``clip(N(0, x_std^2), -1, 1)`` as in the paper. The relevant features sit at random
positions (drawn with the seed), so an attribution that prefers low indices gains nothing.
Functions of the relevant features z_1..z_m: ``linear`` sum_j a_j z_j with a_j = +-(1 + j/m);
``mixed`` cycles z, z^2, sin(pi z), z^3 (the paper's formulas mix such terms); ``interaction``
sum_j z_j z_{j+1} (cyclic), which has no additive part.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from hiddenlens._keys import metric_key
from hiddenlens.attribution._core import Target

__all__ = [
    "CHAOS_FUNCTIONS",
    "CHAOS_METHODS",
    "ChaosData",
    "ChaosRecall",
    "make_chaos_data",
    "topk_recall",
    "topk_hits",
    "chaos_attributions",
]


def _linear(z: np.ndarray) -> np.ndarray:
    m = z.shape[1]
    a = (1 + np.arange(m) / m) * np.where(np.arange(m) % 2, -1.0, 1.0)
    return z @ a


def _mixed(z: np.ndarray) -> np.ndarray:
    terms = (lambda v: v, lambda v: v**2, lambda v: np.sin(np.pi * v), lambda v: v**3)
    return sum(terms[j % 4](z[:, j]) for j in range(z.shape[1]))


def _interaction(z: np.ndarray) -> np.ndarray:
    return (z * np.roll(z, -1, axis=1)).sum(1)


CHAOS_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": _linear,
    "mixed": _mixed,
    "interaction": _interaction,
}


@dataclass
class ChaosData:
    """x: [n, n_features] float32; y: [n] target (with label noise); y_true: [n] without it;
    relevant: indices of the relevant features (sorted)."""

    x: np.ndarray
    y: np.ndarray
    y_true: np.ndarray
    relevant: np.ndarray
    function: str
    n_noise: int
    label_noise: float

    @property
    def n_features(self) -> int:
        return int(self.x.shape[1])

    @property
    def chance(self) -> float:
        """Expected top-k recall of a random ranking: n_relevant / n_features."""
        return len(self.relevant) / self.n_features


def make_chaos_data(
    n: int,
    *,
    n_relevant: int = 5,
    n_noise: int = 50,
    function: str = "mixed",
    label_noise: float = 0.01,
    x_std: float = 0.33,
    seed: int = 0,
) -> ChaosData:
    """``n`` examples of ``n_relevant + n_noise`` features; y = f(relevant) + N(0, label_noise^2)."""
    if function not in CHAOS_FUNCTIONS:
        raise ValueError(f"function={function!r}; accepted: {sorted(CHAOS_FUNCTIONS)}")
    if n < 1 or n_relevant < 1 or n_noise < 0:
        raise ValueError(
            f"need n >= 1, n_relevant >= 1, n_noise >= 0; got {n}, {n_relevant}, {n_noise}"
        )
    if label_noise < 0 or x_std <= 0:
        raise ValueError(f"label_noise must be >= 0 and x_std > 0, got {label_noise}, {x_std}")
    rng = np.random.default_rng(seed)
    d = n_relevant + n_noise
    x = np.clip(rng.normal(0.0, x_std, size=(n, d)), -1, 1)
    relevant = np.sort(rng.choice(d, size=n_relevant, replace=False))
    y_true = CHAOS_FUNCTIONS[function](x[:, relevant])
    y = y_true + rng.normal(0.0, label_noise, size=n) if label_noise else y_true.copy()
    return ChaosData(
        x.astype(np.float32),
        y.astype(np.float32),
        y_true.astype(np.float32),
        relevant,
        function,
        n_noise,
        float(label_noise),
    )


def _ranked(attributions, relevant, k) -> tuple[np.ndarray, np.ndarray, int]:
    """|attributions| as [N, n_features] float64, the sorted relevant indices and k, checked."""
    a = attributions.detach().cpu().numpy() if isinstance(attributions, Tensor) else attributions
    a = np.abs(np.asarray(a, dtype=np.float64))
    if a.ndim < 2 or len(a) == 0 or a[0].size == 0:  # a 1-D array would read as N one-feature rows
        raise ValueError(f"attributions must be [N >= 1, n_features, ...], got shape {a.shape}")
    a = a.reshape(len(a), -1)
    r = np.asarray(relevant)
    if r.size and not np.issubdtype(r.dtype, np.integer):  # 1.5 would be truncated to 1
        raise ValueError(f"relevant must be integer feature indices, got {r.tolist()}")
    rel = np.unique(r.astype(int))
    if rel.size == 0 or rel.min() < 0 or rel.max() >= a.shape[1]:
        raise ValueError(f"relevant must be indices in 0..{a.shape[1] - 1}, got {rel.tolist()}")
    k = len(rel) if k is None else int(k)
    if not 1 <= k <= a.shape[1]:
        raise ValueError(f"k must be in 1..{a.shape[1]}, got {k}")
    return a, rel, k


def topk_recall(
    attributions: np.ndarray | Tensor, relevant: Sequence[int], *, k: int | None = None
) -> np.ndarray:
    """[N] share of the top-``k`` features by |attribution| that are relevant (k = #relevant).

    attributions: [N, n_features] (more dims are flattened). Ties rank the lower index first.
    """
    a, rel, k = _ranked(attributions, relevant, k)
    top = np.argsort(-a, axis=1, kind="stable")[:, :k]
    return np.isin(top, rel).sum(1) / min(k, len(rel))


def topk_hits(
    attributions: np.ndarray | Tensor, relevant: Sequence[int], *, k: int | None = None
) -> np.ndarray:
    """[n_relevant] share of examples whose top-``k`` by |attribution| holds each relevant
    feature (in the order of ``np.unique(relevant)``; k = #relevant).

    The per-feature view of ``topk_recall``: their mean times ``n_relevant / min(k,
    n_relevant)`` is the mean recall. It shows *which* relevant features a method misses
    (in ``mixed`` data: the weak z^2 and z^3 terms, whose gradients vanish near z = 0).
    """
    a, rel, k = _ranked(attributions, relevant, k)
    top = np.argsort(-a, axis=1, kind="stable")[:, :k]
    return np.asarray([(top == j).any(1).mean() for j in rel])


CHAOS_METHODS = ("saliency", "input_x_gradient", "integrated_gradients", "smoothgrad", "ablation")


def chaos_attributions(
    model,
    x: Tensor,
    *,
    methods: Sequence[str] = CHAOS_METHODS,
    target: Target = None,
    ig_steps: int = 32,
    smoothgrad_samples: int = 16,
) -> dict[str, Tensor]:
    """{method: [N, n_features]} attributions of ``model`` on ``x`` [N, n_features].

    saliency / input_x_gradient / integrated_gradients (zero baseline) / smoothgrad (of the
    signed gradient, noise 0.15 of the range) / ablation (each feature set to 0 on its own).
    """
    from hiddenlens.attribution import (
        feature_ablation,
        input_x_gradient,
        integrated_gradients,
        saliency,
        smoothgrad,
    )

    calls = {
        "saliency": lambda: saliency(model, x, target=target),
        "input_x_gradient": lambda: input_x_gradient(model, x, target=target),
        "integrated_gradients": lambda: integrated_gradients(
            model, x, target=target, n_steps=ig_steps
        ),
        "smoothgrad": lambda: smoothgrad(model, x, target=target, n_samples=smoothgrad_samples),
        "ablation": lambda: feature_ablation(
            model, x, target=target, perturbations_per_eval=x.shape[1]
        ),
    }
    methods = [methods] if isinstance(methods, str) else list(methods)
    bad = [m for m in methods if m not in calls]
    if bad:
        raise ValueError(f"unknown method(s) {bad}; accepted: {CHAOS_METHODS}")
    return {m: calls[m]().attributions.detach() for m in methods}


@dataclass
class ChaosRecall:
    """Top-k recall per method at each noise level.

    levels: the number of irrelevant features (or another noise knob) per level; recall:
    {method: [n_levels] mean recall over seeds}; sd: {method: [n_levels]} standard deviation
    over seeds (ddof 1; NaN for one seed), or None; chance: [n_levels]; fit: [n_levels] test
    R^2 of the model.
    """

    levels: list[float]
    recall: dict[str, np.ndarray]
    chance: np.ndarray
    fit: np.ndarray
    knob: str = "n_noise"
    sd: dict[str, np.ndarray] | None = None

    def to_metrics(self) -> dict[str, float]:
        """``attribution/chaos_recall_<method>[_sd]/<knob>=<level>``, ``chaos_chance``,
        ``chaos_r2``."""
        out: dict[str, float] = {}
        for i, lv in enumerate(self.levels):
            where = f"{self.knob}={lv:g}"
            for m, r in self.recall.items():
                out[metric_key("attribution", f"chaos_recall_{m}", where)] = float(r[i])
                if self.sd is not None:
                    out[metric_key("attribution", f"chaos_recall_{m}_sd", where)] = float(
                        self.sd[m][i]
                    )
            out[metric_key("attribution", "chaos_chance", where)] = float(self.chance[i])
            out[metric_key("attribution", "chaos_r2", where)] = float(self.fit[i])
        return out

    @classmethod
    def from_levels(
        cls,
        levels: Sequence[float],
        per_level: Sequence[Mapping[str, float | Sequence[float]]],
        chance,
        fit,
        knob: str = "n_noise",
    ) -> ChaosRecall:
        """Collect one {method: recall, or one recall per seed} dict per level."""
        if not per_level or len(per_level) != len(levels):
            raise ValueError(
                f"need one {{method: recall}} dict per level: {len(levels)} levels, "
                f"{len(per_level)} dicts"
            )
        methods = list(per_level[0])
        runs = {m: [np.atleast_1d(np.asarray(p[m], dtype=float)) for p in per_level] for m in methods}
        recall = {m: np.asarray([r.mean() for r in rs]) for m, rs in runs.items()}
        sd = {
            m: np.asarray([r.std(ddof=1) if len(r) > 1 else np.nan for r in rs])
            for m, rs in runs.items()
        }
        multi = any(len(r) > 1 for rs in runs.values() for r in rs)
        return cls(
            list(levels), recall, np.asarray(chance, float), np.asarray(fit, float), knob,
            sd if multi else None,
        )
