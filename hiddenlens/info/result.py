"""The result type every mutual-information estimator returns.

An estimate of mutual information is meaningless without the estimator's settings (bin
width, noise variance, k, critic): Saxe et al. (2018, "On the Information Bottleneck Theory
of Deep Learning") showed that the information plane's shape changes with them. So every
estimate carries its parameters, the cap the estimator cannot exceed (log N for binning and
KDE, log batch for InfoNCE) and, on request, a bootstrap confidence interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hiddenlens._keys import ci_names, metric_key


@dataclass(frozen=True)
class MIEstimate:
    """One mutual-information estimate.

    Attributes:
        bits: the estimate in bits.
        estimator: name of the estimator ("binning", "kde_upper", "ksg", "infonce", ...).
        params: the settings used (JSON-safe scalars), so a run can be repeated.
        n: number of paired samples used.
        cap: the largest value this estimator can return on this input, in bits (e.g.
            log2 N for binning/KDE, log2 batch for InfoNCE), or None when unbounded.
        ci: optional (low, high) bootstrap percentile interval, in bits.
        extras: other numbers worth reporting (entropies and the other KDE bound in bits,
            a compressor's fidelity as a fraction).
    """

    bits: float
    estimator: str
    params: dict = field(default_factory=dict)
    n: int = 0
    cap: float | None = None
    ci: tuple[float, float] | None = None
    extras: dict = field(default_factory=dict)

    @property
    def nats(self) -> float:
        return self.bits * math.log(2.0)

    @property
    def at_cap(self) -> bool:
        """True when the estimate sits within 1% of its cap (it says little then)."""
        return self.cap is not None and self.bits >= 0.99 * self.cap

    def to_metrics(self, where: str | None = None, name: str | None = None) -> dict[str, float]:
        """Flat metrics ``info/<name>_bits[/<where>]``, ``..._bits_ci_low``, ``_cap``, ``_n``.

        name: the metric stem (default: the estimator, e.g. ``info/binning_bits/layer1``);
        where: the hook point, layer or split the estimate is about. Extras become
        ``info/<name>_<extra>[/<where>]``.
        """
        stem = name or self.estimator

        def key(metric: str) -> str:
            return metric_key("info", f"{stem}_{metric}", where)

        out = {key("bits"): float(self.bits), key("n"): float(self.n)}
        if self.cap is not None:
            out[key("cap")] = float(self.cap)
        if self.ci is not None:
            low, high = ci_names("bits")
            out[key(low)], out[key(high)] = float(self.ci[0]), float(self.ci[1])
        for k, v in self.extras.items():
            out[key(k)] = float(v)
        return out

    def describe(self) -> str:
        """One line for reports: value, cap, CI and settings."""
        s = f"{self.estimator}: {self.bits:.3f} bits"
        if self.ci is not None:
            level = round(100 * self.params.get("confidence", 0.95))
            s += f" ({level}% CI {self.ci[0]:.3f}–{self.ci[1]:.3f})"
        if self.cap is not None:
            s += f", cap {self.cap:.2f}"
        if self.params:
            shown = {k: v for k, v in self.params.items() if k != "confidence"}
            s += " [" + ", ".join(f"{k}={v}" for k, v in shown.items()) + "]"
        return s
