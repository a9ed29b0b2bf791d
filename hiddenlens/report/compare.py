"""Run comparison: several runs' metrics side by side and the SAE frontier.

``hiddenlens report --compare RUN_A RUN_B ... --out DIR`` (or :func:`compare_runs`) reads
each run's ``metrics.json`` — a report's ``{"metrics": {...}}`` or the flat file of
``hiddenlens train-sae`` — and, for SAEs, the architecture from ``cfg.json`` beside it.
A run directory may hold many SAEs, one per sub-directory (a sweep, or the many-SAEs-in-one-
pass trainer's output); each becomes one point. The frontier is the plot SAEBench readers look
for (Karvonen et al. 2025; Gao et al. 2024 for L0 vs normalised MSE): L0 against FVU and
against the spliced score, one point per SAE, coloured by architecture, one pair per hook.
The page is an ordinary :class:`Report`, so it is self-contained and can be rebuilt.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hiddenlens._keys import parse_key
from hiddenlens.report.glossary import describe
from hiddenlens.report.model import Report

log = logging.getLogger(__name__)
#: Spliced scores, in order of preference: the CE-loss score, else the downstream metric.
SPLICED_SCORES = ("ce_loss_score", "embed_cos_score")


@dataclass
class SAEPoint:
    """One SAE on the frontier (metrics of one hook of one run or sub-run)."""

    run: str
    hook: str
    architecture: str
    l0: float | None
    fvu: float | None
    spliced_score: float | None = None
    spliced_metric: str | None = None


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The flat metrics of a run directory (``{}`` when it has no metrics.json)."""
    path = Path(run_dir) / "metrics.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of metrics, got {type(data).__name__}")
    metrics = data.get("metrics", data) if isinstance(data.get("metrics"), dict) else data
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, type(None)))}


def _architecture(run_dir: Path, metrics: dict[str, Any]) -> str:
    """hiddenlens's architecture name from cfg.json (ours, else SAELens's), else 'sae'."""
    path = run_dir / "cfg.json"
    if path.is_file():
        cfg = json.loads(path.read_text(encoding="utf-8"))
        ours = ((cfg.get("metadata") or {}).get("hiddenlens") or {}).get("config") or {}
        return str(ours.get("architecture") or cfg.get("architecture") or "sae")
    config = Path(run_dir) / "config.json"
    if config.is_file():
        arch = json.loads(config.read_text(encoding="utf-8")).get("architecture")
        if isinstance(arch, str):
            return arch
    return "sae"


def _points_of(run_dir: Path, name: str) -> list[SAEPoint]:
    metrics = read_metrics(run_dir)
    by_hook: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        try:
            analyzer, metric, hook = parse_key(key)
        except ValueError:
            continue
        if analyzer == "sae" and hook is not None:
            by_hook.setdefault(hook, {})[metric] = value
    arch = _architecture(run_dir, metrics)
    points = []
    for hook, m in sorted(by_hook.items()):
        if "l0" not in m:
            continue
        spliced = next((s for s in SPLICED_SCORES if m.get(s) is not None), None)
        points.append(
            SAEPoint(
                name,
                hook,
                arch,
                m.get("l0"),
                m.get("fvu"),
                m.get(spliced) if spliced else None,
                spliced,
            )
        )
    return points


def sae_points(run_dir: str | Path, name: str | None = None) -> list[SAEPoint]:
    """Every SAE in a run directory: its own metrics, then each sub-directory's (sorted)."""
    run_dir = Path(run_dir)
    name = name or run_dir.name
    points = _points_of(run_dir, name)
    for sub in sorted(p for p in run_dir.iterdir() if p.is_dir()):
        if (sub / "metrics.json").is_file():
            points += _points_of(sub, f"{name}/{sub.name}")
    return points


def _run_names(run_dirs: Sequence[Path]) -> list[str]:
    names = [p.name for p in run_dirs]
    if len(set(names)) < len(names):
        names = [f"{p.parent.name}/{p.name}" for p in run_dirs]
    if len(set(names)) < len(names):
        names = [str(p) for p in run_dirs]
    return names


def metrics_side_by_side(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per metric key present in any run: its words, then one column per run."""
    keys = list(dict.fromkeys(k for m in runs.values() for k in m))
    rows = []
    for key in keys:
        d = describe(key, next(m[key] for m in runs.values() if key in m))
        row: dict[str, Any] = {"metric": d.name if d else key, "where": (d.where if d else "")}
        row |= {run: m.get(key) for run, m in runs.items()}
        row["key"] = key
        rows.append(row)
    return rows


def _frontier_section(report: Report, points: list[SAEPoint]) -> None:
    from hiddenlens.viz.sae import plot_sae_frontier, plot_sae_frontier_interactive

    sec = report.add_section(
        "SAE frontier",
        text="One point per SAE, coloured by architecture; points of one architecture are "
        "joined in L0 order. Lower-left is better for FVU, upper-left for the spliced score "
        f"(the first of {', '.join(f'`{s}`' for s in SPLICED_SCORES)} a run has).",
    )
    sec.add_table([asdict(p) for p in points], caption="every SAE found in the runs")
    for hook in dict.fromkeys(p.hook for p in points):
        pts = [
            {
                "l0": p.l0,
                "fvu": p.fvu,
                "spliced_score": p.spliced_score,
                "label": p.architecture,
                "name": p.run,
            }
            for p in points
            if p.hook == hook
        ]
        for y in ("fvu", "spliced_score"):
            if not any(p[y] is not None and p["l0"] is not None for p in pts):
                continue
            data, title = {"points": pts, "y": y}, f"{hook}: L0 vs {y.replace('_', ' ')}"
            sec.add_figure(
                plot_sae_frontier(data, title=title),
                f"frontier_{y}_{hook}",
                interactive=plot_sae_frontier_interactive(data, title=title),
            )


def compare_runs(
    run_dirs: Sequence[str | Path], out_dir: str | Path, *, title: str | None = None
) -> Path:
    """Write a comparison page of ``run_dirs`` into ``out_dir``; returns its report.html."""
    dirs = [Path(p) for p in run_dirs]
    if len(dirs) < 1:
        raise ValueError("compare_runs needs at least one run directory")
    missing = [str(p) for p in dirs if not p.is_dir()]
    if missing:
        raise FileNotFoundError(f"run directories do not exist: {missing}")
    names = _run_names(dirs)
    runs = {n: read_metrics(p) for n, p in zip(names, dirs)}
    found = {n: sae_points(p, n) for n, p in zip(names, dirs)}
    points = [pt for pts in found.values() for pt in pts]
    report = Report(
        title or f"Comparison of {len(dirs)} runs",
        config={"runs": {n: str(p.resolve()) for n, p in zip(names, dirs)}},
    )
    overview = report.add_section("Runs")
    overview.add_table(
        [
            {
                "run": n,
                "directory": str(p),
                "metrics": len(runs[n]),
                "SAEs": len(found[n]),
            }
            for n, p in zip(names, dirs)
        ]
    )
    if points:
        _frontier_section(report, points)
    rows = metrics_side_by_side(runs)
    if rows:
        report.add_section("Metrics side by side").add_table(
            rows, caption="one column per run; '—': the run has no such metric"
        )
    log.info("comparison of %d runs, %d SAEs -> %s", len(dirs), len(points), out_dir)
    return report.write(out_dir)
