"""Plain words for metric keys: name, unit, direction and a one-line reading of each value.

A metric key is ``<analyzer>/<metric>[/<hook or split>]`` (:mod:`hiddenlens._keys`); its
description is looked up by ``(analyzer, metric)``, where the metric may carry a stem (the
probed property, the MI estimator): ``("probe", "*_compression")`` matches
``probe/digit_compression/encoder.layer.3`` with ``{stem}`` = ``digit``. Where an estimate
sits at its estimator's cap — a binning I(X;T) at log2 of the number of rows, when every row
has its own bin (Saxe et al. 2018) — the reading says so: the number then measures the
sample, not the network. The cap is read from the companion ``<metric>_cap`` key that
:class:`hiddenlens.info.MIEstimate` writes.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass
from typing import Any

from hiddenlens._keys import parse_key
from hiddenlens.report._words import (  # noqa: F401  (re-exported: the glossary's vocabulary)
    GLOSSARY,
    HIGHER,
    LOWER,
    NEAR_ONE,
    NEUTRAL,
    MetricInfo,
)


@dataclass(frozen=True)
class Described:
    """One metric said in words (what the summary shows)."""

    key: str
    name: str
    where: str | None
    value: Any
    unit: str
    direction: str
    reading: str
    caveat: str | None = None


def lookup(analyzer: str, metric: str) -> tuple[MetricInfo, str] | None:
    """(description, stem) for a metric name, or None if the glossary has no entry."""
    table = GLOSSARY.get(analyzer, {})
    if metric in table:
        return table[metric], metric
    for pattern, info in table.items():
        if "*" in pattern and fnmatch.fnmatchcase(metric, pattern):
            fixed = [p for p in pattern.split("*") if p]
            stem = metric
            for part in fixed:
                stem = stem.replace(part, "", 1)
            return info, stem.strip("_") or metric
    return None


def _cap(key: str, metrics: dict[str, Any]) -> float | None:
    analyzer, metric, where = parse_key(key)
    names = {f"{metric}_cap", metric.rsplit("_", 1)[0] + "_cap"}
    for name in names:
        cap = metrics.get("/".join(p for p in (analyzer, name, where) if p))
        if isinstance(cap, (int, float)) and math.isfinite(cap):
            return float(cap)
    return None


def describe(key: str, value: Any, metrics: dict[str, Any] | None = None) -> Described | None:
    """Words for one metric (None for keys outside the grammar or the glossary)."""
    try:
        analyzer, metric, where = parse_key(key)
    except ValueError:
        return None
    found = lookup(analyzer, metric)
    if found is None:
        return None
    info, stem = found
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value):
        reading = "not computed (missing)"
    else:
        tight = "tight" if value < 0.1 else "spread" if value > 1 else "partly collapsed"
        fields = {
            "value": value,
            "pct": f"{100 * value:.1f}%",
            "stem": stem,
            "metric": metric,
            "where": where or "",
            "tight": tight,
        }
        reading = info.reading.format(**fields)
    caveat = None
    cap = _cap(key, metrics or {})
    if number and cap is not None and math.isfinite(value) and value >= 0.99 * cap:
        caveat = (
            f"at the estimator's cap ({cap:.3g} {info.unit}): every row is "
            "distinguishable, so the value measures the sample size, not the layer"
        )
    return Described(
        key,
        info.name.format(stem=stem, metric=metric),
        where,
        value,
        info.unit,
        info.direction,
        reading,
        caveat,
    )
