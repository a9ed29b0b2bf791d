"""Feature complexity from V-information (Fel, Bethune, Lampinen, Serre & Hermann 2024,
"Understanding Visual Feature Reliance through the Lens of Complexity").

V-information (Xu et al. 2020) is the information a *restricted* predictor family V can
extract: I_V(X -> Y) = H_V(Y | nothing) - H_V(Y | X).  With V the linear probes, a feature
(a label, or a direction's activation) is *simple* when it is already decodable from early
layers and *complex* when it only becomes decodable late.  Per layer we measure the
normalised decodability

    class labels:  I_V / H_V(Y)  with held-out cross-entropies (bits) of the linear probe
                   and of the training-fold class frequencies,
    real values:   held-out R^2 (V-information under a fixed-variance Gaussian family,
                   divided by its maximum),

clipped to [0, 1], and complexity = 1 - mean over layers of the normalised decodability
(0: decodable everywhere, 1: decodable nowhere).  Pass the layers in network order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hiddenlens._keys import metric_key


@dataclass
class ComplexityResult:
    hook_points: list[str]
    decodability: np.ndarray  # [L] normalised, in [0, 1]
    complexity: float
    v_information_bits: np.ndarray | None = None  # [L], class labels only
    name: str = "complexity"

    def to_metrics(self) -> dict[str, float]:
        """``probe/{name}`` and ``probe/{name}_decodability/{hook}``."""
        out = {metric_key("probe", self.name): float(self.complexity)}
        for i, h in enumerate(self.hook_points):
            out[metric_key("probe", f"{self.name}_decodability", h)] = float(self.decodability[i])
        return out


def decodability_profile(sweep_result) -> tuple[np.ndarray, np.ndarray | None]:
    """Normalised decodability per layer from a ``SweepResult`` (and I_V in bits)."""
    r = sweep_result
    if r.metric == "r2":
        return np.clip(r.score, 0.0, 1.0), None
    if r.log_loss_bits is None or r.prior_bits is None:
        raise ValueError("V-information needs probabilities: sweep with probe='linear'")
    iv = r.prior_bits - r.log_loss_bits
    return np.clip(iv / max(r.prior_bits, 1e-12), 0.0, 1.0), iv


def feature_complexity(store, feature, hook_points=None, *, name="complexity", **sweep_kw):
    """Complexity of ``feature`` (labels or real values per row) over ``hook_points``.

    sweep_kw go to ``sweep`` (cv, rows, groups, alpha, seed, ...)."""
    from hiddenlens.probe.sweep import sweep

    result = sweep(store, feature, hook_points, probe="linear", **sweep_kw)
    dec, iv = decodability_profile(result)
    return ComplexityResult(result.hook_points, dec, float(1.0 - dec.mean()), iv, name)
