"""The report's summary: each headline metric in words, with its unit, direction and a
one-line reading (and the caveat where an estimator sits at its cap); the raw metric keys
stay in a folded detail view below. Descriptions come from :mod:`hiddenlens.report.glossary`.
"""

from __future__ import annotations

import html
from typing import Any

from hiddenlens.report.glossary import describe

_ARROW = {
    "higher is better": "↑ higher is better",
    "lower is better": "↓ lower is better",
    "1 is ideal": "→ 1 is ideal",
}


def summary_rows(headline: dict[str, Any], metrics: dict[str, Any]) -> list[dict[str, str]]:
    """One row per headline metric: what, where, value, direction, reading (all plain text)."""
    from hiddenlens.report.html import format_value

    rows = []
    for key, value in headline.items():
        d = describe(key, value, metrics)
        if d is None:
            rows.append(
                {
                    "metric": key,
                    "where": "",
                    "value": format_value(value),
                    "direction": "",
                    "reading": "",
                    "caveat": "",
                }
            )
            continue
        rows.append(
            {
                "metric": d.name,
                "where": d.where or "",
                "value": f"{format_value(value)} {d.unit}".strip(),
                "direction": _ARROW.get(d.direction, d.direction),
                "reading": d.reading,
                "caveat": d.caveat or "",
            }
        )
    return rows


def render_summary(headline: dict[str, Any], metrics: dict[str, Any]) -> str:
    """The summary section's HTML (escaped), or '' without headline metrics."""
    if not headline:
        return ""
    from hiddenlens.report.html import metrics_table

    body = ""
    for r in summary_rows(headline, metrics):
        caveat = f"<div class='caveat'>⚠ {html.escape(r['caveat'])}</div>" if r["caveat"] else ""
        where = f"<div class='where'>{html.escape(r['where'])}</div>" if r["where"] else ""
        body += (
            f"<tr><th>{html.escape(r['metric'])}{where}</th>"
            f"<td class='num'>{html.escape(r['value'])}</td>"
            f"<td class='dir'>{html.escape(r['direction'])}</td>"
            f"<td>{html.escape(r['reading'])}{caveat}</td></tr>"
        )
    head = "<tr><th>metric</th><th>value</th><th>direction</th><th>what it says</th></tr>"
    keys = metrics_table(headline)
    return (
        "<section id='summary'><h2>Summary</h2><div class='scroll'>"
        f"<table class='summary'>{head}{body}</table></div>"
        f"<details><summary>Metric keys ({len(headline)})</summary>{keys}</details></section>"
    )
