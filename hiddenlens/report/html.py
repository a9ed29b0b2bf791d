"""Render a Report as one self-contained HTML page.

Every piece of text (titles, captions, table cells, metric names — which may come from
datasets or model tokens) is HTML-escaped. matplotlib figures are inlined as PNG data URIs;
plotly figures as divs sharing one embedded copy of plotly.js, so the page works offline.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

from hiddenlens._io import write_bytes
from hiddenlens._keys import parse_key
from hiddenlens.report.markup import markdown
from hiddenlens.viz.save import is_plotly, save_figure

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}main{max-width:1100px;margin:0 auto;padding:1.5rem 2rem 4rem;box-sizing:border-box}
h1{font-size:1.8rem;margin:.5rem 0 1rem}h2{border-bottom:2px solid #4477AA;padding-bottom:.2rem;
margin-top:2.5rem}nav{display:flex;flex-wrap:wrap;gap:.3rem 1rem}nav a{color:#4477AA}
section{background:#fff;padding:.5rem 1.5rem 1.5rem;border-radius:6px;
box-shadow:0 1px 3px rgba(0,0,0,.08);margin-bottom:1.5rem;overflow-wrap:anywhere}
table{border-collapse:collapse;font-size:.9rem;margin:.5rem 0}td,th{border:1px solid #ddd;
padding:.25rem .6rem;text-align:left;vertical-align:top}th{background:#f0f3f8}td.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}.missing{color:#999}figure{margin:1rem 0;
max-width:100%;overflow-x:auto}figcaption{color:#555;font-size:.9rem}.scroll{overflow-x:auto;
max-width:100%}summary{cursor:pointer;color:#4477AA;margin:.4rem 0}img{max-width:100%}
.summary td.num{font-weight:600}.summary .where{font-weight:400;color:#666;font-size:.8rem}
.summary .dir{white-space:nowrap;color:#555}.caveat{color:#a0522d;font-size:.85rem;margin-top:.2rem}
code{background:#f3f3f3;padding:0 .2rem;border-radius:3px}.print-only{display:none}
pre.untrusted{white-space:pre-wrap;word-break:break-all;background:#fff4f4;padding:.5rem}
@media print{.print-only{display:block}.screen-only{display:none}}
"""


def format_value(value: Any) -> str:
    """A metric value as plain text: 4 significant digits, thousands separators, '—' if missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def _fmt(value: Any) -> tuple[str, str]:
    """(cell html, css class) for a metric value; NaN/None are shown as missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '<span class="missing">—</span>', "num"
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return html.escape(format_value(value)), "num" if numeric else ""


def metrics_table(metrics: dict[str, Any], css: str = "") -> str:
    """A two-column key/value table (escaped), scrolling sideways when it is wide."""
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td class='{c}'>{v}</td></tr>"
        for k, (v, c) in ((k, _fmt(val)) for k, val in metrics.items())
    )
    return f"<div class='scroll'><table class='{css}'>{rows}</table></div>"


def _split_key(key: str) -> tuple[str, str]:
    """(metric, hook or split) of a key: ``sae/fvu/h`` -> (``sae/fvu``, ``h``).

    A key in the grammar without a hook/split (``collapse/nc1``) has none (``""``); other
    keys split at their last ``/``.
    """
    try:
        analyzer, metric, where = parse_key(key)
    except ValueError:
        name, _, suffix = key.rpartition("/")
        return name, suffix
    return f"{analyzer}/{metric}", where or ""


def _pivot(metrics: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Split ``{"analyzer/metric/hook": v}`` keys into a metric x hook table; the rest stay flat.

    Only hooks/splits that at least two metric names share become columns, so keys such as
    ``"collapse/nc1/encoder.layer.3"`` line up by layer while one-off keys are left alone.
    """
    by_name: dict[str, dict[str, Any]] = {}
    suffix_count: dict[str, int] = {}
    for key in metrics:
        name, suffix = _split_key(key)
        if name and suffix:
            suffix_count[suffix] = suffix_count.get(suffix, 0) + 1
    columns = [c for c, n in suffix_count.items() if n >= 2]
    if len(columns) < 2:
        return [], metrics
    flat: dict[str, Any] = {}
    for key, value in metrics.items():
        name, suffix = _split_key(key)
        if name and suffix in columns:
            by_name.setdefault(name, {"metric": name})[suffix] = value
        else:
            flat[key] = value
    return list(by_name.values()), flat


def _metrics_block(metrics: dict[str, Any]) -> str:
    """A metrics block: by-layer grids where keys allow, long blocks folded away."""
    grid, flat = _pivot(metrics)
    parts = [_table(grid)] if grid else []
    if flat:
        parts.append(metrics_table(flat))
    body = "".join(parts)
    if len(grid) + len(flat) > 16:
        return f"<details><summary>All {len(metrics)} metrics</summary>{body}</details>"
    return body


def _table(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = ""
    for row in rows:
        cells = (_fmt(row.get(c)) for c in columns)
        body += "<tr>" + "".join(f"<td class='{cls}'>{v}</td>" for v, cls in cells) + "</tr>"
    return f"<div class='scroll'><table><tr>{head}</tr>{body}</table></div>"


def _figure(fig: Any, name: str, fig_dir: Path) -> tuple[str, str]:
    """(html, file name under fig_dir) for a live figure or one saved by an earlier run."""
    if isinstance(fig, SavedFigure):
        fig = fig.load()
    if is_plotly(fig):
        path = save_figure(fig, fig_dir / f"{name}.json")
        div = fig.to_html(full_html=False, include_plotlyjs=False, default_width="100%")
        return div, path.name
    path = fig_dir / f"{name}.png"
    if isinstance(fig, bytes):
        write_bytes(path, fig)
    else:
        save_figure(fig, path)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>", path.name


def _figure_block(block, name: str, fig_dir: Path) -> str:
    """A figure; with an interactive twin, the plotly div on screen and the PNG for print."""
    fig_html, block.file = _figure(block.payload, name, fig_dir)
    if block.twin is None:
        return fig_html
    twin_html, block.twin_file = _figure(block.twin, f"{name}.interactive", fig_dir)
    return f"<div class='screen-only'>{twin_html}</div><div class='print-only'>{fig_html}</div>"


class SavedFigure:
    """A figure file written by an earlier run (PNG bytes or plotly JSON), for rebuilds."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def is_plotly(self) -> bool:
        return self.path.suffix == ".json"

    def load(self) -> Any:
        if self.is_plotly:
            import plotly.io

            try:
                return plotly.io.from_json(self.path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise ValueError(f"{self.path} is not a plotly figure: {exc}") from exc
        return self.path.read_bytes()


def _unique(name: str, used: set[str]) -> str:
    candidate, i = name, 1
    while candidate in used:
        i += 1
        candidate = f"{name}_{i}"
    used.add(candidate)
    return candidate


def _section_html(section, index: int, fig_dir: Path, used: set[str]) -> tuple[str, bool]:
    parts, has_plotly = [], False
    for block in section.blocks:
        caption = f"<figcaption>{html.escape(block.caption)}</figcaption>" if block.caption else ""
        if block.kind == "text":
            parts.append(markdown(block.payload))
        elif block.kind == "untrusted":
            parts.append(
                "<figure><pre class='untrusted'>"
                f"{html.escape(block.payload)}</pre><figcaption>HTML read back from report.json "
                "is shown as text: a rebuild renders only what hiddenlens writes.</figcaption>"
                "</figure>"
            )
        elif block.kind == "metrics":
            parts.append(f"<figure>{_metrics_block(block.payload)}{caption}</figure>")
        elif block.kind == "table":
            parts.append(f"<figure>{_table(block.payload)}{caption}</figure>")
        elif block.kind == "html":
            parts.append(f"<figure>{block.payload}{caption}</figure>")
        else:
            for fig in (block.payload, block.twin):
                has_plotly |= is_plotly(fig) or getattr(fig, "is_plotly", False)
            name = _unique(block.name, used)
            parts.append(f"<figure>{_figure_block(block, name, fig_dir)}{caption}</figure>")
    body = "".join(parts)
    return (
        f"<section id='s{index}'><h2>{html.escape(section.title)}</h2>{body}</section>",
        has_plotly,
    )


def render_html(report, fig_dir: Path) -> str:
    """The full page for ``report``; figures are also written into ``fig_dir``."""
    from hiddenlens.report.summary import render_summary

    used: set[str] = set()
    rendered = [_section_html(s, i, fig_dir, used) for i, s in enumerate(report.sections)]
    needs_plotly = any(flag for _, flag in rendered)
    script = ""
    if needs_plotly:
        from plotly.offline import get_plotlyjs

        script = f"<script type='text/javascript'>{get_plotlyjs()}</script>"
    nav = "".join(
        f"<a href='#s{i}'>{html.escape(s.title)}</a>" for i, s in enumerate(report.sections)
    )
    summary = render_summary(report.headline, report.all_metrics())
    title = html.escape(report.title)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{_CSS}</style>{script}</head><body><main><h1>{title}</h1><nav>{nav}</nav>"
        f"{summary}{''.join(h for h, _ in rendered)}</main></body></html>"
    )
