"""Probe MiniLM's layers for token properties: layer curves, control-task selectivity,
MDL online codelength and the CKA matrix between layers.  Shared by the demo section
(experiments/demo/probe_section.py) and the fuller run (experiments/probe_minilm/run.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from hiddenlens import metric_key
from hiddenlens.probe import cka_matrix, mdl_probe, probe_with_control, selectivity
from hiddenlens.store.source import read_hooks

# token positions are bucketed on a log scale: 0 (CLS is dropped, so the first word), 1-3, ...
POSITION_EDGES = (1, 4, 8, 16, 32, 64)
PROPERTIES = ("is_digit", "is_capitalised", "is_punct", "is_continuation", "position_bucket")


@dataclass
class ProbeSettings:
    """Sizes of one run; the demo uses small ones, the experiment larger ones."""

    rows: int = 12_000  # token rows probed (sampled from the store)
    mdl_rows: int = 5_000  # rows sent through the online code
    cka_rows: int = 4_000
    cv: int = 3
    n_boot: int = 200
    max_iter: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("rows", "mdl_rows", "cka_rows"):
            if getattr(self, name) < 100:
                raise ValueError(f"{name} must be >= 100, got {getattr(self, name)}")
        if self.cv < 2:
            raise ValueError(f"cv must be >= 2, got {self.cv}")


@dataclass
class ProbeRun:
    hooks: list[str]
    tasks: dict = field(default_factory=dict)  # property -> SweepResult
    controls: dict = field(default_factory=dict)
    mdl: dict = field(default_factory=dict)  # property -> (MDLResult task, MDLResult control)
    cka: object = None
    skipped: dict = field(default_factory=dict)  # property -> reason
    seconds: float = 0.0


def property_labels(token_labels: dict) -> dict[str, np.ndarray]:
    """The probed properties per store row (booleans as 0/1, position as a log bucket)."""
    out = {k: np.asarray(token_labels[k]).astype(np.int64) for k in PROPERTIES[:-1]}
    out["position_bucket"] = np.digitize(np.asarray(token_labels["position"]), POSITION_EDGES)
    return out


def run_probes(store, hooks, token_labels, groups, settings: ProbeSettings) -> ProbeRun:
    """Everything the report shows, on a row sample of ``store``."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    n_all = len(token_labels["position"])
    rows = np.sort(rng.choice(n_all, min(settings.rows, n_all), replace=False))
    arrays = read_hooks(store, hooks, rows)  # read the store once, reuse for every probe
    labels = {k: v[rows] for k, v in property_labels(token_labels).items()}
    types = np.asarray(token_labels["token_id"])[rows]
    groups = np.asarray(groups)[rows]
    run = ProbeRun(list(arrays))
    mdl_rows = rng.choice(len(rows), min(settings.mdl_rows, len(rows)), replace=False)
    for name, y in labels.items():
        counts = np.bincount(y)
        if (counts > 0).sum() < 2 or counts[counts > 0].min() < 2 * settings.cv:
            run.skipped[name] = f"too few rows per class in the sample: {counts.tolist()}"
            continue
        task, ctrl = probe_with_control(
            arrays,
            y,
            types,
            cv=settings.cv,
            groups=groups,
            n_boot=settings.n_boot,
            seed=settings.seed,
            max_iter=settings.max_iter,
            name=name,
        )
        run.tasks[name], run.controls[name] = task, ctrl
        sub = {h: X[mdl_rows] for h, X in arrays.items()}
        control = _control_like(types[mdl_rows], y[mdl_rows], settings.seed)
        run.mdl[name] = (
            mdl_probe(
                sub, y[mdl_rows], seed=settings.seed, name=f"mdl_{name}", max_iter=settings.max_iter
            ),
            mdl_probe(
                sub,
                control,
                seed=settings.seed,
                name=f"mdl_{name}_control",
                max_iter=settings.max_iter,
            ),
        )
    cka_idx = rng.choice(len(rows), min(settings.cka_rows, len(rows)), replace=False)
    run.cka = cka_matrix({h: X[cka_idx] for h, X in arrays.items()})
    run.seconds = time.perf_counter() - t0
    return run


def _control_like(types, y, seed):
    from hiddenlens.probe import control_task

    return control_task(types, y, seed=seed)


def summary_rows(run: ProbeRun) -> list[dict]:
    """One table row per property: best layer, its accuracy, chance, selectivity, MDL."""
    table = []
    for name, task in run.tasks.items():
        sel = task.selectivity(run.controls[name])
        i = int(np.argmax(task.score))
        mdl_task, mdl_ctrl = run.mdl[name]
        table.append(
            {
                "property": name,
                "best layer": task.hook_points[i],
                "accuracy": round(float(task.score[i]), 4),
                "95% CI": f"[{task.ci_low[i]:.3f}, {task.ci_high[i]:.3f}]",
                "majority class": round(task.chance, 4),
                "control accuracy": round(float(run.controls[name].score[i]), 4),
                "selectivity": round(float(sel[i]), 4),
                "max selectivity layer": task.hook_points[int(np.argmax(sel))],
                "MDL compression (task)": round(float(mdl_task.compression[i]), 3),
                "MDL compression (control)": round(float(mdl_ctrl.compression[i]), 3),
            }
        )
    return table


def run_metrics(run: ProbeRun) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, task in run.tasks.items():
        out.update(task.to_metrics())
        out.update(selectivity(task, run.controls[name]))
        for res in run.mdl[name]:
            out.update(res.to_metrics())
    out.update(run.cka.to_metrics())
    out[metric_key("probe", "seconds")] = run.seconds
    return out


def add_to_section(section, run: ProbeRun) -> None:
    """Figures, table and metrics of a run, in a report section."""
    from hiddenlens.viz.interactive import plot_heatmap_interactive
    from hiddenlens.viz.layers import plot_layer_curves_interactive
    from hiddenlens.viz.probe import LayerCurves, plot_cka_matrix, plot_layer_curves

    chance = {k: t.chance for k, t in run.tasks.items()}
    curves = LayerCurves.from_results(run.tasks, reference=chance)
    section.add_figure(
        plot_layer_curves(curves),
        "probe_layer_curves",
        interactive=plot_layer_curves_interactive(curves),
        caption="Held-out accuracy of a linear probe per layer (grouped folds "
        "by document; band: 95% bootstrap CI over documents; dotted: majority class).",
    )
    sel = {k: t.selectivity(run.controls[k]) for k, t in run.tasks.items()}
    section.add_figure(
        plot_layer_curves(
            LayerCurves(run.hooks, sel, reference=0.0, ylabel="selectivity (task - control)")
        ),
        "probe_selectivity",
        caption="Task accuracy minus control-task accuracy (random label per "
        "token type, Hewitt & Liang 2019).",
    )
    comp = {k: m[0].compression for k, m in run.mdl.items()}
    comp.update({f"{k} (control)": m[1].compression for k, m in run.mdl.items()})
    section.add_figure(
        plot_layer_curves(
            LayerCurves(
                run.hooks,
                comp,
                reference=1.0,
                reference_label="uniform code",
                ylabel="compression (x)",
            )
        ),
        "probe_mdl",
        caption="Online-code compression (Voita & Titov 2020) of each property "
        "and of its control task.",
    )
    section.add_figure(
        plot_cka_matrix(run.cka.matrix, rows=run.cka.rows),
        "probe_cka",
        interactive=plot_heatmap_interactive(
            run.cka.matrix, rows=run.cka.rows, zlabel="linear CKA", xlabel="layer", ylabel="layer"
        ),
        caption="Linear CKA between layers on the same token rows.",
    )
    section.add_table(summary_rows(run), caption="Per property, at the layer with the best probe.")
    if run.skipped:
        section.add_text("Skipped: " + "; ".join(f"{k} ({v})" for k, v in run.skipped.items()))
    section.add_metrics(run_metrics(run))
