"""Probe every layer of all-MiniLM-L6-v2 for token properties of the bundled corpus.

    python -m experiments.probe_minilm.run --out runs/probe_minilm [--rows 30000] [--fast]

Reports, per property (digit, capitalised, punctuation, word continuation, position
bucket): the held-out accuracy by layer with bootstrap CIs (folds grouped by document),
the control-task selectivity (Hewitt & Liang 2019), the MDL online codelength of the task
and of its control (Voita & Titov 2020), the V-information complexity of the property over
the layers (Fel et al. 2024), a nearest-class-mean baseline, and the linear CKA matrix
between layers (biased and debiased).  What the run finds is reported as found.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

HOOKS = "encoder.layer.*"
PROPERTIES = ("is_digit", "is_capitalised", "is_punct", "is_continuation", "position_bucket")


def cache(out: Path, max_rows: int, fast: bool):
    """The store and its per-row token labels (the properties above)."""
    import hiddenlens
    from hiddenlens.analyze.inputs import token_labels
    from hiddenlens.corpus import demo_corpus

    handle = hiddenlens.load_model("minilm")
    texts = demo_corpus(max_docs=120 if fast else None)
    store = hiddenlens.cache_activations(
        handle, texts, HOOKS, out / "store", batch_size=32, max_rows=max_rows, seq_len=256
    )
    labels = token_labels(handle, texts, store.meta, 256)
    return store, {k: labels[k] for k in PROPERTIES}


def extras(store, hooks, run, labels, rows: int, seed: int) -> tuple[list[dict], dict]:
    """Complexity per property, nearest-mean baseline, debiased CKA."""
    from hiddenlens.probe import cka_matrix, feature_complexity, sweep
    from hiddenlens.store.source import read_hooks

    n = len(store)
    rng = np.random.default_rng(seed + 1)
    idx = np.sort(rng.choice(n, min(rows, n), replace=False))
    arrays = read_hooks(store, hooks, idx)
    groups = np.asarray(store.meta["sample_idx"])[idx]
    table, metrics = [], {}
    for name, y in labels.items():
        if name not in run.tasks:
            continue
        comp = feature_complexity(
            arrays, y[idx], cv=3, groups=groups, seed=seed, name=f"complexity_{name}"
        )
        ncm = sweep(
            arrays, y[idx], probe="nearest_mean", cv=3, groups=groups, seed=seed, name=f"ncm_{name}"
        )
        metrics.update(comp.to_metrics())
        metrics.update(ncm.to_metrics())
        table.append(
            {
                "property": name,
                "V-information complexity": round(comp.complexity, 3),
                "decodability by layer": ", ".join(f"{v:.2f}" for v in comp.decodability),
                "nearest-mean best accuracy": round(float(ncm.score.max()), 4),
                "linear best accuracy": round(float(run.tasks[name].score.max()), 4),
            }
        )
    sub = rng.choice(len(idx), min(4000, len(idx)), replace=False)
    deb = cka_matrix({h: X[sub] for h, X in arrays.items()}, debiased=True, name="cka_debiased")
    metrics.update(deb.to_metrics())
    return table, {"metrics": metrics, "cka_debiased": deb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/probe_minilm"))
    parser.add_argument("--rows", type=int, default=30_000, help="token rows probed")
    parser.add_argument("--max-rows", type=int, default=60_000, help="token rows cached")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="tiny settings (smoke test)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from hiddenlens.analyze.config import ProbeSectionConfig
    from hiddenlens.analyze.sections.probe import add_to_section, run_probes
    from hiddenlens.report import Report
    from hiddenlens.store.source import read_hooks
    from hiddenlens.viz.probe import plot_cka_matrix

    store, labels = cache(args.out, 3_000 if args.fast else args.max_rows, args.fast)
    hooks = [h for h in store.hook_points if not h.endswith("#grad")]
    settings = ProbeSectionConfig(
        rows=1_500 if args.fast else args.rows,
        mdl_rows=1_000 if args.fast else 10_000,
        cka_rows=1_000 if args.fast else 8_000,
        cv=3 if args.fast else args.cv,
    )
    rng = np.random.default_rng(args.seed)
    rows = np.sort(rng.choice(len(store), min(settings.rows, len(store)), replace=False))
    meta = store.meta
    run = run_probes(
        read_hooks(store, hooks, rows),
        {k: v[rows] for k, v in labels.items()},
        np.asarray(meta["token_id"])[rows],
        np.asarray(meta["sample_idx"])[rows],
        settings,
        args.seed,
    )
    config = {
        "model": "all-MiniLM-L6-v2",
        "hooks": hooks,
        "cached_rows": len(store),
        "seed": args.seed,
        **{k: getattr(settings, k) for k in ("rows", "mdl_rows", "cka_rows", "cv")},
    }
    report = Report("Probing all-MiniLM-L6-v2 layer by layer", config=config)
    section = report.add_section("Layer curves, selectivity, MDL and CKA")
    add_to_section(section, run)
    table, extra = extras(store, hooks, run, labels, settings.rows // 2, args.seed)
    more = report.add_section("Feature complexity (V-information) and baselines")
    more.add_text(
        "Complexity = 1 - mean over layers of the normalised V-information a linear probe "
        "extracts (held-out cross-entropy gain over the class prior, divided by the prior's "
        "entropy). Low: decodable from the first layer on; high: only late or never."
    )
    more.add_table(table)
    more.add_figure(
        plot_cka_matrix(
            extra["cka_debiased"].matrix,
            rows=extra["cka_debiased"].rows,
            title="Debiased linear CKA between layers",
        ),
        "cka_debiased",
    )
    more.add_metrics(extra["metrics"])
    report.add_metrics(
        {f"probe/best_accuracy/{n}": float(t.score.max()) for n, t in run.tasks.items()}
    )
    path = report.write(args.out)
    sys.stdout.write(f"report: {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
