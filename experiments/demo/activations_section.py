"""Demo section: activation statistics per MiniLM layer (norms, Lazy-Neuron sparsity)."""

from __future__ import annotations

import torch

from hiddenlens.hooks import capture
from hiddenlens.viz.activations import plot_layer_norms, plot_percent_nonzero


def run(ctx) -> None:
    texts = ctx.texts[: 16 if ctx.fast else 128]
    mlp_hooks = [f"encoder.layer.{i}.intermediate" for i in range(6)]
    positive = {h: 0.0 for h in mlp_hooks}
    count = 0
    for i in range(0, len(texts), 16):
        enc = ctx.handle.tokenize(texts[i : i + 16], seq_len=256)
        keep = enc["attention_mask"].bool()
        with capture(ctx.handle, mlp_hooks) as cap, torch.no_grad():
            ctx.handle.forward(enc)
        for h in mlp_hooks:
            positive[h] += float((cap[h][keep] > 0).float().sum())
        count += int(keep.sum()) * cap[mlp_hooks[0]].shape[-1]
    percent = [100 * positive[h] / count for h in mlp_hooks]
    section = ctx.report.add_section("Activation statistics")
    section.add_text(
        "Percentage of MLP units (the GELU output of each layer's intermediate block) with a "
        "positive activation, over all real tokens — the Lazy Neuron measurement (Li et al. "
        "report 3.0% for T5-Base's ReLU MLPs; GELU lets small negative values through, so "
        "'positive' is the closest analogue here)."
    )
    section.add_metrics(
        {f"activations/percent_positive/{h}": p for h, p in zip(mlp_hooks, percent)}
    )
    section.add_figure(plot_percent_nonzero(dict(zip(mlp_hooks, percent))), "percent_positive")
    norms = [ctx.store.stats(h)["mean_norm"] for h in ctx.hooks]
    section.add_figure(plot_layer_norms(dict(zip(ctx.hooks, norms))), "layer_norms")
