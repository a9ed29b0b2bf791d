"""``hiddenlens report RUN_DIR``: re-render a run's report from its saved results.

A run directory written by :meth:`Report.write` keeps ``report.json`` (the sections, texts,
metrics, tables and figure file names) next to ``figures/``; this turns them back into
``report.html`` and ``metrics.json`` without re-running anything.
"""

from __future__ import annotations

from pathlib import Path

from hiddenlens.report.model import Report


def rebuild_report(run_dir: str | Path) -> Path:
    """Rewrite ``RUN_DIR/report.html`` (and metrics.json) from ``RUN_DIR/report.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {str(run_dir)!r} does not exist")
    return Report.from_run_dir(run_dir).write(run_dir)
