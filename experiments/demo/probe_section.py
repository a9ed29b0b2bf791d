"""Demo section: linear probes on every MiniLM layer for token properties, with control-task
selectivity (Hewitt & Liang 2019), MDL online codelength (Voita & Titov 2020) and the linear
CKA matrix between layers (Kornblith et al. 2019)."""

from __future__ import annotations

import numpy as np

from experiments.probe_minilm.analysis import ProbeSettings, add_to_section, run_probes


def run(ctx) -> None:
    settings = (
        ProbeSettings(
            rows=800, mdl_rows=400, cka_rows=500, cv=3, n_boot=20, max_iter=100, seed=ctx.seed
        )
        if ctx.fast
        else ProbeSettings(rows=4_000, mdl_rows=2_000, cka_rows=2_000, cv=3, seed=ctx.seed)
    )
    groups = np.asarray(ctx.store.meta["sample_idx"])
    result = run_probes(ctx.store, ctx.hooks, ctx.token_labels, groups, settings)
    ctx.artifacts["probe"] = result
    section = ctx.report.add_section("Probing: what each layer makes linearly readable")
    section.add_text(
        f"Linear probes (L2 logistic regression, all layers and folds fitted in one batched "
        f"L-BFGS) on {settings.rows:,} sampled token rows, {settings.cv}-fold cross-validation "
        "grouped by document. Each property is paired with a control task that gives every "
        "token type a random label from the same distribution: high task accuracy with low "
        "selectivity means the probe can memorise token identity, not that the layer encodes "
        "the property in context. Properties such as digit or punctuation are nearly functions "
        "of the token type, so their selectivity is expected to be small; position is not. "
        f"The MDL online code is computed on {settings.mdl_rows:,} rows; CKA on "
        f"{settings.cka_rows:,}. See experiments/probe_minilm for the fuller run."
    )
    add_to_section(section, result)
