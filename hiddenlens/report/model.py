"""The Report model: sections of text, flat metrics, tables and figures.

``Report.write(out_dir)`` produces ``report.html`` (self-contained: images inlined,
plotly.js embedded once, works offline), ``metrics.json`` (flat metrics + config +
provenance), ``config.json`` and ``figures/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hiddenlens._io import write_json, write_text
from hiddenlens.report.metrics import flatten, provenance

_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]+")
REPORT_JSON = "report.json"  # the report's structure, so `hiddenlens report` can rebuild it


def figure_name(name: str) -> str:
    """A figure's file stem: runs of characters outside ``[A-Za-z0-9_.-]`` become ``_``."""
    return _NAME_OK.sub("_", str(name)).strip(".") or "figure"


@dataclass
class Block:
    """One item of a section: kind is 'text', 'metrics', 'table', 'figure' or 'html'.

    ('untrusted' is an 'html' block read back from a file: it is shown as escaped text.)
    """

    kind: str
    payload: Any
    caption: str | None = None
    name: str | None = None
    file: str | None = None  # figure file under figures/, set when the report is written
    twin: Any = None  # a figure's interactive (plotly) twin, shown on screen; PNG for print
    twin_file: str | None = None

    def to_json(self) -> dict[str, Any]:
        payload = self.file if self.kind == "figure" else self.payload
        kind = "html" if self.kind == "untrusted" else self.kind
        out = {"kind": kind, "payload": payload, "caption": self.caption, "name": self.name}
        if self.twin_file is not None:
            out["twin"] = self.twin_file
        return out


@dataclass
class Section:
    """A titled part of a report, usually one analyzer."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    def add_text(self, text: str) -> Section:
        """Plain text; blank lines separate paragraphs, lines starting '- ' are bullets."""
        self.blocks.append(Block("text", str(text)))
        return self

    def add_metrics(self, metrics: dict[str, Any], caption: str | None = None) -> Section:
        self.blocks.append(Block("metrics", flatten(dict(metrics)), caption))
        return self

    def add_table(self, rows: list[dict[str, Any]], caption: str | None = None) -> Section:
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise TypeError("add_table takes a list of dicts (one per row)")
        self.blocks.append(Block("table", rows, caption))
        return self

    def add_figure(
        self, fig: Any, name: str, caption: str | None = None, *, interactive: Any = None
    ) -> Section:
        """A figure; ``interactive``: its plotly twin, shown on screen (``fig`` is kept as
        the static PNG for print and PDF)."""
        if not (hasattr(fig, "savefig") or type(fig).__module__.startswith("plotly")):
            raise TypeError(
                f"add_figure takes a matplotlib or plotly figure, got {type(fig).__name__}"
            )
        if interactive is not None and not type(interactive).__module__.startswith("plotly"):
            raise TypeError(f"interactive= takes a plotly figure, got {type(interactive).__name__}")
        block = Block("figure", fig, caption, figure_name(name), twin=interactive)
        self.blocks.append(block)
        return self

    def add_html(self, html: str, caption: str | None = None) -> Section:
        """Trusted HTML produced by this process (already escaped), e.g. token heatmaps.

        It is rendered as markup only by the process that adds it: ``hiddenlens report``
        reads ``report.json`` as untrusted and shows such a block as escaped text. For a
        link, use ``add_text`` with ``[text](file.html)`` instead, which survives a rebuild.
        """
        self.blocks.append(Block("html", html, caption))
        return self

    def metrics(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for block in self.blocks:
            if block.kind == "metrics":
                out.update(block.payload)
        return out


class Report:
    """A report under construction; see the module docstring for what ``write`` produces."""

    def __init__(self, title: str, *, config: dict[str, Any] | None = None) -> None:
        self.title = title
        self.config = dict(config or {})
        self.sections: list[Section] = []
        self.headline: dict[str, Any] = {}

    def add_section(self, title: str, *, text: str | None = None) -> Section:
        section = Section(title)
        if text:
            section.add_text(text)
        self.sections.append(section)
        return section

    def add_metrics(self, metrics: dict[str, Any]) -> None:
        """Headline metrics, shown in the summary at the top of the report."""
        self.headline.update(flatten(dict(metrics)))

    def all_metrics(self) -> dict[str, Any]:
        out = dict(self.headline)
        for section in self.sections:
            out.update(section.metrics())
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "config": self.config,
            "headline": self.headline,
            "sections": [
                {"title": s.title, "blocks": [b.to_json() for b in s.blocks]} for s in self.sections
            ],
        }

    @classmethod
    def from_run_dir(cls, run_dir: str | Path) -> Report:
        """Load a written report's structure (checked as untrusted input, see ``rebuild``)."""
        from hiddenlens.report.rebuild import read_report

        return read_report(run_dir)

    def write(self, out_dir: str | Path) -> Path:
        """Write report.html, metrics.json, config.json and figures/; returns the html path."""
        from hiddenlens.report.html import render_html

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "figures").mkdir(exist_ok=True)
        write_json(out / "config.json", self.config)
        write_json(
            out / "metrics.json",
            {"metrics": self.all_metrics(), "config": self.config, "provenance": provenance()},
        )
        html = render_html(self, out / "figures")
        write_json(out / REPORT_JSON, self.to_json())
        return write_text(out / "report.html", html)
