"""Section: activation statistics per hook point — mean norms, and the share of positive
units (the Lazy-Neuron measurement of Li et al. 2023, "The Lazy Neuron Phenomenon": T5's
ReLU MLPs have ~3% of units non-zero; for GELU, 'positive' is the closest analogue)."""

from __future__ import annotations

import torch

from hiddenlens._keys import metric_key

USES_SAE = False
STORE_ROWS = 10_000  # rows read per cached hook for the positive share


def _live_positive(ctx, hooks: list[str], docs: int) -> dict[str, float]:
    """Share of positive units at ``hooks`` over the rows of the first ``docs`` samples."""
    from hiddenlens.hooks.rows import iter_row_batches

    data = ctx.data.source.take(docs)
    positive = dict.fromkeys(hooks, 0.0)
    total = dict.fromkeys(hooks, 0)
    with torch.no_grad():
        for batch in iter_row_batches(
            ctx.handle, data, hooks, batch_size=ctx.cfg.model.batch_size,
            seq_len=ctx.cfg.model.seq_len, rows=ctx.cfg.cache.rows,
        ):
            for h, rows in batch.acts.items():
                positive[h] += float((rows > 0).sum())
                total[h] += rows.numel()
    return {h: 100 * positive[h] / max(total[h], 1) for h in positive}


def run(ctx, cfg, report) -> None:
    from hiddenlens.hooks import resolve_hook_points
    from hiddenlens.viz.activations import plot_layer_norms, plot_percent_nonzero

    hooks = ctx.hooks
    idx = ctx.sample(STORE_ROWS)
    stored = {h: 100 * float((ctx.rows(h, idx) > 0).mean()) for h in hooks}
    norms = [float(ctx.store.stats(h)["mean_norm"]) for h in hooks]
    sec = report.add_section("Activation statistics")
    metrics = {metric_key("activations", "mean_norm", h): v for h, v in zip(hooks, norms)}
    metrics |= {metric_key("activations", "percent_positive", h): v for h, v in stored.items()}
    text = (
        f"Mean L2 norm of the cached rows per hook point (from the store's running "
        f"statistics), and the percentage of units with a positive value over {len(idx):,} "
        "cached rows."
    )
    if cfg.hooks:
        live_hooks = resolve_hook_points(ctx.handle, cfg.hooks)
        live = _live_positive(ctx, live_hooks, cfg.docs)
        metrics |= {metric_key("activations", "percent_positive", h): v for h, v in live.items()}
        text += (
            f" Also captured live (not stored) on the first {cfg.docs} samples: "
            f"{', '.join(live_hooks)} — for MLP outputs this is the Lazy-Neuron measurement "
            "(Li et al. report 3.0% non-zero for T5-Base's ReLU MLPs; GELU lets small "
            "negative values through, so 'positive' is the closest analogue)."
        )
        sec.add_figure(
            plot_percent_nonzero(live), "percent_positive_live"
        )
    sec.add_text(text)
    sec.add_metrics(metrics)
    sec.add_figure(plot_percent_nonzero(stored), "percent_positive")
    sec.add_figure(plot_layer_norms(dict(zip(hooks, norms))), "layer_norms")
