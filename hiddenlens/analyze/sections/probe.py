"""Section: linear probes on every layer for each label — layer curves with bootstrap CIs,
control-task selectivity (Hewitt & Liang 2019; text only: a control task gives every token
type a random label), MDL online codelength (Voita & Titov 2020) and the linear CKA matrix
between layers (Kornblith et al. 2019)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from hiddenlens.analyze.inputs import TOKEN_LABELS

USES_SAE = False
logger = logging.getLogger(__name__)


@dataclass
class ProbeRun:
    """Everything the section shows (``experiments/probe_minilm`` renders the same)."""

    hooks: list[str]
    tasks: dict = field(default_factory=dict)  # label -> SweepResult
    controls: dict = field(default_factory=dict)  # label -> SweepResult (text only)
    mdl: dict = field(default_factory=dict)  # label -> (MDLResult task, MDLResult control|None)
    cka: object = None
    skipped: dict = field(default_factory=dict)  # label -> reason
    grouped: bool = True  # folds grouped by document (False: too few documents, said aloud)
    seconds: float = 0.0


def run_probes(arrays: dict[str, np.ndarray], labels: dict[str, np.ndarray], types, groups,
               cfg, seed: int, *, controlled=None) -> ProbeRun:
    """Probe each label on ``arrays`` (hook -> [n, d]); ``types`` (token ids) adds control
    tasks for the labels in ``controlled`` (default: all); ``groups`` (document per row)
    makes the folds and the bootstrap grouped."""
    from hiddenlens.probe import cka_matrix, control_task, mdl_probe, probe_with_control, sweep

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    n = len(groups)
    run = ProbeRun(list(arrays))
    mdl_rows = rng.choice(n, min(cfg.mdl_rows, n), replace=False)
    kw = dict(cv=cfg.cv, groups=groups, n_boot=cfg.n_boot, seed=seed, max_iter=cfg.max_iter)
    if not _enough_groups(groups, cfg.cv):
        # ungrouped folds put rows of one document on both sides: recorded and reported
        logger.warning("probe: %d documents are too few for grouped %d-fold CV; folds split "
                       "rows, so document-level labels may read high", len(np.unique(groups)),
                       cfg.cv)
        kw["groups"], run.grouped = None, False
    for name, y in labels.items():
        counts = np.bincount(y)
        if (counts > 0).sum() < 2 or counts[counts > 0].min() < 2 * cfg.cv:
            run.skipped[name] = f"too few rows per class in the sample: {counts.tolist()}"
            continue
        control = None
        if types is not None and (controlled is None or name in controlled):
            control = control_task(types, y, seed=seed)
            if len(np.unique(control)) < 2:
                run.skipped[f"{name} (control)"] = "the control task drew a single class"
                control = None
        if control is not None:
            task, ctrl = probe_with_control(arrays, y, types, name=f"probe_{name}", **kw)
            run.controls[name] = ctrl
        else:
            task = sweep(arrays, y, name=f"probe_{name}", **kw)
        run.tasks[name] = task
        sub = {h: X[mdl_rows] for h, X in arrays.items()}
        mdl_kw = dict(seed=seed, max_iter=cfg.max_iter)
        if control is not None:
            control = mdl_probe(sub, control_task(types[mdl_rows], y[mdl_rows], seed=seed),
                                name=f"mdl_{name}_control", **mdl_kw)
        run.mdl[name] = (mdl_probe(sub, y[mdl_rows], name=f"mdl_{name}", **mdl_kw), control)
    if len(arrays) > 1:
        cka_idx = rng.choice(n, min(cfg.cka_rows, n), replace=False)
        run.cka = cka_matrix({h: X[cka_idx] for h, X in arrays.items()})
    run.seconds = time.perf_counter() - t0
    return run


def _enough_groups(groups: np.ndarray, cv: int) -> bool:
    """Whether grouped folds work: ``cv`` outer folds, and every outer training set holding
    enough documents for the inner folds that choose the L2 strength (``probe._alpha``)."""
    from sklearn.model_selection import GroupKFold

    from hiddenlens.probe._alpha import N_INNER

    if len(np.unique(groups)) < cv:
        return False
    split = GroupKFold(cv).split(groups, groups=groups)
    return all(len(np.unique(groups[tr])) >= N_INNER for tr, _ in split)


def summary_rows(run: ProbeRun) -> list[dict]:
    """One table row per label: best layer, its accuracy, chance, selectivity, MDL."""
    table = []
    for name, task in run.tasks.items():
        i = int(np.argmax(task.score))
        mdl_task, mdl_ctrl = run.mdl[name]
        row = {
            "label": name,
            "best layer": task.hook_points[i],
            "accuracy": round(float(task.score[i]), 4),
            "95% CI": f"[{task.ci_low[i]:.3f}, {task.ci_high[i]:.3f}]",
            "majority class": round(task.chance, 4),
            "L2 alpha (inner CV)": float(f"{task.extra['alpha'][i]:.3g}"),
            "MDL compression (task)": round(float(mdl_task.compression[i]), 3),
        }
        if name in run.controls:
            sel = task.selectivity(run.controls[name])
            row |= {
                "control accuracy": round(float(run.controls[name].score[i]), 4),
                "selectivity": round(float(sel[i]), 4),
                "max selectivity layer": task.hook_points[int(np.argmax(sel))],
                "MDL compression (control)": round(float(mdl_ctrl.compression[i]), 3),
            }
        table.append(row)
    return table


def run_metrics(run: ProbeRun) -> dict[str, float]:
    from hiddenlens._keys import metric_key

    out: dict[str, float] = {}
    for name, task in run.tasks.items():
        out.update(task.to_metrics())
        if name in run.controls:
            for h, s in zip(task.hook_points, task.selectivity(run.controls[name])):
                out[metric_key("probe", f"selectivity_{name}", h)] = float(s)
        for res in run.mdl[name]:
            if res is not None:
                out.update(res.to_metrics())
    if run.cka is not None:
        out.update(run.cka.to_metrics())
    out[metric_key("probe", "seconds")] = run.seconds
    return out


def add_to_section(section, run: ProbeRun) -> None:
    """Figures, table and metrics of a run, in a report section."""
    from hiddenlens.viz.probe import LayerCurves, plot_cka_matrix, plot_layer_curves

    if run.tasks:
        chance = {k: t.chance for k, t in run.tasks.items()}
        section.add_figure(
            plot_layer_curves(LayerCurves.from_results(run.tasks, reference=chance)),
            "probe_layer_curves",
            caption="Held-out accuracy of a linear probe per layer (folds grouped by document "
            "where there are enough; band: 95% bootstrap CI; dotted: majority class).",
        )
    if run.controls:
        sel = {k: t.selectivity(run.controls[k]) for k, t in run.tasks.items()}
        section.add_figure(
            plot_layer_curves(
                LayerCurves(run.hooks, sel, reference=0.0, ylabel="selectivity (task - control)")
            ),
            "probe_selectivity",
            caption="Task accuracy minus control-task accuracy (random label per token type, "
            "Hewitt & Liang 2019).",
        )
    if run.mdl:
        comp = {k: m[0].compression for k, m in run.mdl.items()}
        comp |= {f"{k} (control)": m[1].compression for k, m in run.mdl.items() if m[1] is not None}
        section.add_figure(
            plot_layer_curves(LayerCurves(run.hooks, comp, reference=1.0,
                                          reference_label="uniform code", ylabel="compression (x)")),
            "probe_mdl",
            caption="Online-code compression (Voita & Titov 2020) of each label"
            + (" and of its control task." if run.controls else "."),
        )
    if run.cka is not None:
        section.add_figure(plot_cka_matrix(run.cka.matrix, rows=run.cka.rows), "probe_cka",
                           caption="Linear CKA between layers on the same rows.")
    section.add_table(summary_rows(run), caption="Per label, at the layer with the best probe.")
    if run.skipped:
        section.add_text("Skipped: " + "; ".join(f"{k} ({v})" for k, v in run.skipped.items()))
    section.add_metrics(run_metrics(run))


DEFAULT_TEXT_LABELS = ("is_digit", "is_capitalised", "is_punct", "is_continuation", "position_bucket")


def run(ctx, cfg, report) -> None:
    vals = ctx.labels.values
    default = [k for k in DEFAULT_TEXT_LABELS if k in vals] + list(ctx.cfg.data.labels)
    names = ctx.labels.pick(cfg.labels, default)
    hooks = ctx.hooks_for(cfg.hooks)
    rows = ctx.sample(cfg.rows)
    arrays = {h: ctx.rows(h, rows) for h in hooks}  # read the store once, reuse for every probe
    meta = ctx.store.meta
    types = np.asarray(meta["token_id"])[rows] if "token_id" in meta else None
    result = run_probes(arrays, {k: vals[k][rows] for k in names}, types, ctx.groups[rows],
                        cfg, ctx.seed, controlled=set(TOKEN_LABELS))
    sec = report.add_section("Probing: what each layer makes linearly readable")
    folds = "grouped by document" if result.grouped else (
        f"NOT grouped by document: the sample holds only {len(np.unique(ctx.groups[rows]))} "
        "documents, too few for grouped folds, so rows of one document sit on both sides and "
        "document-level labels may read high")
    control = (
        "Each label is paired with a control task that gives every token type a random label "
        "from the same distribution: high task accuracy with low selectivity means the probe "
        "can memorise token identity, not that the layer encodes the label in context "
        "(token labels only; a document label has no per-token-type control). "
        if types is not None else
        "No control task: the rows carry no token identity (control tasks need token types). "
    )
    sec.add_text(
        f"Linear probes (L2 logistic regression, all layers and folds fitted in one batched "
        f"L-BFGS; the L2 strength chosen per layer and fold by 3-fold inner cross-validation "
        f"over scikit-learn's C in 0.01 ... 100, reported as probe/..._alpha) on "
        f"{len(rows):,} sampled rows, {cfg.cv}-fold cross-validation {folds}. "
        f"{control}The MDL online code is computed on "
        f"{min(cfg.mdl_rows, len(rows)):,} rows; CKA on {min(cfg.cka_rows, len(rows)):,}."
    )
    add_to_section(sec, result)
