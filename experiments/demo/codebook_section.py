"""Demo section: a codebook bottleneck inside MiniLM ("Codebook Features", Tamkin et al. 2023).

A codebook (cosine top-k) is attached at one encoder layer, initialised by k-means on the
cached activations and fine-tuned (codes only) so that the sentence embeddings stay close to
the original model's (distillation on cosine similarity). Codes are then searched for
simple token properties and compared with the best single neuron of the raw activation.
Because only the codes are trained, the codes the attached model selects for a token equal
the codebook applied to the cached (original) activation of that token, so the search runs
on the store rows.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hiddenlens.codebook import (
    FinetuneConfig,
    attach,
    code_usage,
    compare_with_neurons,
    finetune,
    layer_stats,
    search_codes,
)
from hiddenlens.hooks import pool_embeddings
from hiddenlens.viz.codebook import plot_code_usage, plot_code_vs_neuron, plot_losses

PROPERTIES = ("is_digit", "is_capitalised", "is_punct", "is_continuation")


def _settings(ctx) -> dict:
    if ctx.fast:
        return dict(
            n_codes=64,
            k=4,
            init_rows=1024,
            steps=2,
            batch=4,
            seq_len=32,
            search_rows=3000,
            max_seconds=3.0,
            eval_texts=4,
        )
    # Sized for ~2 minutes on 2 cores: MiniLM runs at a few hundred tokens/s there.
    return dict(
        n_codes=512,
        k=8,
        init_rows=4096,
        steps=300,
        batch=8,
        seq_len=64,
        search_rows=10000,
        max_seconds=120.0,
        eval_texts=8,
    )


def _embed(handle, enc) -> torch.Tensor:
    return pool_embeddings(handle.forward(enc), enc["attention_mask"])


@torch.no_grad()
def _mean_cosine(cb, handle, texts, seq_len) -> float:
    enc = handle.tokenize(texts, seq_len=seq_len)
    with cb.disabled():
        ref = _embed(handle, enc)
    return float((ref * _embed(handle, enc)).sum(-1).mean())


def run(ctx) -> None:
    s = _settings(ctx)
    hook = "encoder.layer.3" if "encoder.layer.3" in ctx.hooks else ctx.hooks[len(ctx.hooks) // 2]
    rng = np.random.default_rng(ctx.seed)
    n = len(ctx.store)
    init_idx = np.sort(rng.choice(n, min(s["init_rows"], n), replace=False))
    init = ctx.store.rows(hook)[init_idx]
    t0 = time.perf_counter()
    cb = attach(
        ctx.handle, hook, s["n_codes"], s["k"], init={hook: init}, kmeans_iter=10, seed=ctx.seed
    )
    try:
        metrics, history = _finetune(ctx, cb, hook, s)
        metrics["codebook/kmeans_and_finetune_s"] = time.perf_counter() - t0
        rows = np.array(ctx.store.rows(hook)[: s["search_rows"]], dtype=np.float32)
        codes = cb.layers[hook].encode(torch.from_numpy(rows)).numpy()
    finally:
        cb.detach()
    _search_and_report(ctx, hook, s, codes, rows, metrics, history)


def _finetune(ctx, cb, hook, s):
    handle = ctx.handle
    texts = ctx.texts
    eval_texts, train_texts = texts[: s["eval_texts"]], texts[s["eval_texts"] :] or texts
    cos_init = _mean_cosine(cb, handle, eval_texts, s["seq_len"])
    batches = [
        handle.tokenize(train_texts[i : i + s["batch"]], seq_len=s["seq_len"])
        for i in range(0, min(len(train_texts), s["steps"] * s["batch"]), s["batch"])
    ]

    def distill(out, batch):
        # Teacher: the same model without the codebook, computed only for steps that run.
        with torch.no_grad(), cb.disabled():
            target = _embed(handle, batch)
        emb = pool_embeddings(out, batch["attention_mask"])
        return 1.0 - (emb * target).sum(-1).mean()

    history = finetune(
        cb,
        batches,
        distill,
        FinetuneConfig(steps=s["steps"], lr=1e-3, aux_weight=0.1, max_seconds=s["max_seconds"]),
        forward=lambda model, batch: handle.forward(batch),
    )
    metrics = {
        "codebook/embedding_cosine_kmeans_init": cos_init,
        "codebook/embedding_cosine_finetuned": _mean_cosine(cb, handle, eval_texts, s["seq_len"]),
        "codebook/finetune_steps": float(history["steps"]),
        "codebook/finetune_tokens_per_s": history["tokens_per_s"],
    }
    return metrics, history


def _search_and_report(ctx, hook, s, codes, rows, metrics, history) -> None:
    n_codes = s["n_codes"]
    metrics.update(layer_stats(codes, n_codes, name=hook))
    table, names, code_f1, neuron_f1 = [], [], [], []
    for prop in PROPERTIES:
        mask = np.asarray(ctx.token_labels[prop][: len(codes)], dtype=bool)
        if not mask.any() or mask.all():
            continue
        cmp = compare_with_neurons(codes, rows, mask, n_codes, name=prop)
        metrics.update(cmp)
        names.append(prop)
        code_f1.append(cmp[f"codebook/code_f1/{prop}"])
        neuron_f1.append(cmp[f"codebook/neuron_f1/{prop}"])
        for m in search_codes(codes, mask, n_codes, top=3):
            table.append({"property": prop, **m.to_dict()})
    sec = ctx.report.add_section("Codebook features")
    sec.add_text(
        f"A codebook of {n_codes} codes (cosine, top-{s['k']}) replaces the output of {hook}; "
        f"codes were initialised by k-means on {s['init_rows']} cached rows and fine-tuned "
        f"for {int(metrics['codebook/finetune_steps'])} steps with the model frozen, keeping "
        "the mean-pooled sentence embedding close to the original (1 - cosine). Code search "
        f"over {len(codes):,} token rows: per property, the codes with the best F1, and the "
        "best single code against the best single neuron of the raw activation (best "
        "threshold, either sign). A code is one of k active per token, so its F1 is "
        "bounded by how the property splits across codes."
    )
    sec.add_metrics(metrics)
    sec.add_table(table, caption="top codes per token property")
    if names:
        sec.add_figure(
            plot_code_vs_neuron(dict(zip(names, zip(code_f1, neuron_f1)))), "codebook_search"
        )
    sec.add_figure(plot_code_usage(code_usage(codes, n_codes)), "codebook_usage")
    sec.add_figure(
        plot_losses({"1 - cosine": history["loss"]}, title="distillation"), "codebook_finetune"
    )
    ctx.artifacts["codebook"] = {"hook": hook, "metrics": metrics, "search": table}
