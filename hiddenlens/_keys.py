"""The one grammar of metric keys: ``<analyzer>/<metric>[/<hook or split>]``.

Every result's ``to_metrics()`` builds its keys here, so ``metrics.json`` of every run reads
the same way: ``sae/fvu/blocks.1.hook_resid_post``, ``probe/accuracy_ci_low/encoder.layer.3``,
``probe/cka/encoder.layer.0~encoder.layer.5``, ``collapse/nc1/encoder.layer.5``. A pair of
hooks is joined by ``~``; confidence bounds are the metric name with ``_ci_low`` /
``_ci_high``. No bare keys, no ``|``.
"""

from __future__ import annotations

#: The namespaces a key may start with: one per analyzer, "activations" for statistics of the
#: cached activations themselves, and "run" for a run's own bookkeeping (timings per stage).
ANALYZERS = (
    "sae", "codebook", "probe", "info", "collapse", "shortcut", "attribution", "activations",
    "run",
)
PAIR_SEP = "~"


def metric_key(analyzer: str, metric: str, where: str | None = None) -> str:
    """Build ``analyzer/metric[/where]``; ``where`` is a hook point, a hook pair or a split."""
    if analyzer not in ANALYZERS:
        raise ValueError(f"unknown analyzer {analyzer!r}; expected one of {ANALYZERS}")
    if not metric or "/" in metric or "|" in metric:
        raise ValueError(f"metric name {metric!r} must be non-empty without '/' or '|'")
    if where is None:
        return f"{analyzer}/{metric}"
    if not where or "|" in where:
        raise ValueError(f"hook/split {where!r} must be non-empty without '|'")
    return f"{analyzer}/{metric}/{where}"


def pair(a: str, b: str) -> str:
    """The ``where`` of a metric about two hooks: ``a~b``."""
    return f"{a}{PAIR_SEP}{b}"


def ci_names(metric: str) -> tuple[str, str]:
    """The names of a metric's confidence bounds: ``(metric_ci_low, metric_ci_high)``."""
    return f"{metric}_ci_low", f"{metric}_ci_high"


def parse_key(key: str) -> tuple[str, str, str | None]:
    """Split a key into ``(analyzer, metric, where)``; raises on keys outside the grammar."""
    parts = key.split("/", 2)
    if len(parts) < 2 or parts[0] not in ANALYZERS or not parts[1] or "|" in key:
        raise ValueError(
            f"metric key {key!r} is not '<analyzer>/<metric>[/<hook or split>]' with "
            f"analyzer in {ANALYZERS}"
        )
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None
