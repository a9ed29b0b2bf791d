"""``hiddenlens report RUN_DIR``: re-render a run's report from its saved results.

A run directory written by :meth:`Report.write` keeps ``report.json`` (the sections, texts,
metrics, tables and figure file names) next to ``figures/``; this turns them back into
``report.html`` and ``metrics.json`` without re-running anything.

A run directory is an ordinary thing to receive from someone else, so ``report.json`` is
read as untrusted data, never as page markup: every block must be one of the kinds
hiddenlens writes with the payload type it writes; raw ``html`` blocks are shown as escaped
text, not markup; a figure must be a plain ``.png``/``.json`` file that resolves (symlinks
followed) to a path inside ``RUN_DIR/figures``; block names are sanitised exactly as
:meth:`Section.add_figure` does, so a rebuilt figure is only ever written inside
``RUN_DIR/figures``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hiddenlens.report.model import REPORT_JSON, Block, Report, figure_name

FIGURE_SUFFIXES = (".png", ".json")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_SCALARS = (str, int, float, bool, type(None))


class UntrustedReportError(ValueError):
    """``report.json`` holds something hiddenlens never writes (names the field and value)."""


def _bad(where: str, what: str) -> UntrustedReportError:
    return UntrustedReportError(f"report.json {where}: {what}")


def _text(value: Any, where: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _bad(where, f"expected a string, got {type(value).__name__}")
    return value


def _scalar_dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(where, f"expected an object of numbers/strings, got {type(value).__name__}")
    for key, v in value.items():
        if not isinstance(v, _SCALARS) or (isinstance(v, float) and math.isinf(v)):
            raise _bad(f"{where}[{key!r}]", f"expected a number or string, got {type(v).__name__}")
    return dict(value)


def figure_path(run_dir: Path, file: Any, where: str) -> Path:
    """``RUN_DIR/figures/file`` if it is a plain figure file inside ``RUN_DIR/figures``."""
    if not isinstance(file, str) or not file:
        raise _bad(where, f"figure file must be a non-empty string, got {file!r}")
    fig_dir = (run_dir / "figures").resolve()
    if not fig_dir.is_relative_to(run_dir.resolve()):
        raise _bad(where, f"{run_dir / 'figures'} links outside the run directory")
    path = (fig_dir / file).resolve()
    if path.parent != fig_dir or Path(file).name != file:
        raise _bad(where, f"figure file {file!r} is not a file directly inside {fig_dir}")
    if path.suffix not in FIGURE_SUFFIXES:
        raise _bad(where, f"figure file {file!r} must end in one of {FIGURE_SUFFIXES}")
    if not path.is_file():
        raise _bad(where, f"figure file {file!r} does not exist in {fig_dir}")
    if path.suffix == ".png" and path.read_bytes()[:8] != _PNG_MAGIC:
        raise _bad(where, f"figure file {file!r} is not a PNG image")
    return path


def _block(raw: Any, run_dir: Path, where: str) -> Block:
    from hiddenlens.report.html import SavedFigure

    if not isinstance(raw, dict):
        raise _bad(where, f"expected a block object, got {type(raw).__name__}")
    kind, payload = raw.get("kind"), raw.get("payload")
    caption = _text(raw.get("caption"), f"{where}.caption", optional=True)
    if kind == "text":
        return Block("text", _text(payload, f"{where}.payload"), caption)
    if kind == "html":  # markup from a file is data, never markup: shown escaped
        return Block("untrusted", _text(payload, f"{where}.payload"), caption)
    if kind == "metrics":
        return Block("metrics", _scalar_dict(payload, f"{where}.payload"), caption)
    if kind == "table":
        if not isinstance(payload, list):
            raise _bad(f"{where}.payload", "a table must be a list of row objects")
        rows = [_scalar_dict(r, f"{where}.payload[{i}]") for i, r in enumerate(payload)]
        return Block("table", rows, caption)
    if kind == "figure":
        path = figure_path(run_dir, payload, f"{where}.payload")
        name = figure_name(_text(raw.get("name") or path.stem, f"{where}.name"))
        twin = raw.get("twin")
        if twin is not None:
            twin = SavedFigure(figure_path(run_dir, twin, f"{where}.twin"))
            if not twin.is_plotly:
                raise _bad(
                    f"{where}.twin", f"an interactive twin must be plotly JSON, got {raw['twin']!r}"
                )
        return Block("figure", SavedFigure(path), caption, name, twin=twin)
    raise _bad(
        f"{where}.kind",
        f"unknown block kind {kind!r}; expected text, html, metrics, table or figure",
    )


def read_report(run_dir: str | Path) -> Report:
    """Load ``RUN_DIR/report.json`` as a :class:`Report`, checking it as untrusted input."""
    run_dir = Path(run_dir)
    path = run_dir / REPORT_JSON
    if not path.exists():
        raise FileNotFoundError(
            f"{run_dir} has no {REPORT_JSON}; pass a directory written by Report.write"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UntrustedReportError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("sections"), list):
        raise _bad("top level", "expected an object with a 'sections' list")
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise _bad("config", f"expected an object, got {type(config).__name__}")
    report = Report(_text(data.get("title"), "title"), config=config)
    report.headline = _scalar_dict(data.get("headline") or {}, "headline")
    for i, sec in enumerate(data["sections"]):
        if not isinstance(sec, dict) or not isinstance(sec.get("blocks"), list):
            raise _bad(f"sections[{i}]", "expected an object with a 'blocks' list")
        section = report.add_section(_text(sec.get("title"), f"sections[{i}].title"))
        for j, raw in enumerate(sec["blocks"]):
            section.blocks.append(_block(raw, run_dir, f"sections[{i}].blocks[{j}]"))
    return report


def rebuild_report(run_dir: str | Path) -> Path:
    """Rewrite ``RUN_DIR/report.html`` (and metrics.json) from ``RUN_DIR/report.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    return read_report(run_dir).write(run_dir)
