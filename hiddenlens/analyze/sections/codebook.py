"""Section: a codebook bottleneck inside the model ("Codebook Features", Tamkin et al. 2023).

A codebook (cosine top-k) is attached at one hook, initialised by k-means on the cached
activations and fine-tuned (codes only) so the model's output stays close to the original
(distillation: 1 - cosine of sentence embeddings for text encoders, KL of next-token
distributions for language models, squared error of the output for other modules). Codes
are then searched for each label and compared with the best single neuron of the raw
activation. Because only the codes are trained, the codes the attached model selects for a
row equal the codebook applied to the cached (original) activation, so the search runs on
the store rows.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from hiddenlens._keys import metric_key
from hiddenlens.analyze.context import is_language_model, is_text_encoder

USES_SAE = False


def _output_of(ctx, out) -> torch.Tensor:
    """What distillation compares: pooled embedding, log-probs, or the output tensor."""
    from hiddenlens.attribution._core import first_tensor

    if is_language_model(ctx.handle):
        return F.log_softmax(first_tensor(out).float(), -1)
    return first_tensor(out).float()


def _distance(ctx, out, ref, batch) -> torch.Tensor:
    from hiddenlens.hooks import pool_embeddings

    if is_text_encoder(ctx.handle):
        emb = pool_embeddings(out, batch["attention_mask"])
        return 1.0 - (emb * pool_embeddings(ref, batch["attention_mask"])).sum(-1).mean()
    a, b = _output_of(ctx, out), _output_of(ctx, ref)
    if is_language_model(ctx.handle):
        return (b.exp() * (b - a)).sum(-1).mean()  # KL(p_clean || p_codebook)
    return ((a - b) ** 2).flatten(1).sum(1).mean() / b.flatten(1).pow(2).sum(1).mean().clamp_min(1e-12)


def _batches(ctx, cfg, start: int) -> list:
    data = ctx.data.data[start:]
    n = min(len(data), cfg.steps * cfg.batch)
    if ctx.texts is not None:
        return [ctx.handle.tokenize(list(data[i: i + cfg.batch]), seq_len=cfg.seq_len)
                for i in range(0, n, cfg.batch)]
    x = torch.as_tensor(np.asarray(data[:n])) if not isinstance(data, torch.Tensor) else data[:n]
    return [x[i: i + cfg.batch] for i in range(0, n, cfg.batch)]


def _finetune(ctx, cb, cfg) -> tuple[dict, dict]:
    from hiddenlens.codebook import FinetuneConfig, finetune

    handle = ctx.handle
    eval_batch = _batches(ctx, type(cfg)(**{**cfg.__dict__, "steps": 1, "batch": cfg.eval_docs}), 0)[0]
    train = _batches(ctx, cfg, cfg.eval_docs) or [eval_batch]

    @torch.no_grad()
    def fidelity() -> float:
        with cb.disabled():
            ref = handle.forward(eval_batch)
        return float(_distance(ctx, handle.forward(eval_batch), ref, eval_batch))

    def distill(out, batch):
        with torch.no_grad(), cb.disabled():  # teacher: the model without the codebook
            ref = handle.forward(batch)
        return _distance(ctx, out, ref, batch)

    before = fidelity()
    history = finetune(
        cb, train, distill,
        FinetuneConfig(steps=cfg.steps, lr=1e-3, aux_weight=0.1, max_seconds=cfg.max_seconds),
        forward=lambda model, batch: handle.forward(batch),
    )
    kind = "embedding_cosine" if is_text_encoder(handle) else "distill_loss"
    convert = (lambda d: 1.0 - d) if kind == "embedding_cosine" else (lambda d: d)
    metrics = {
        metric_key("codebook", f"{kind}_kmeans_init"): convert(before),
        metric_key("codebook", f"{kind}_finetuned"): convert(fidelity()),
        metric_key("codebook", "finetune_steps"): float(history["steps"]),
        metric_key("codebook", "finetune_tokens_per_s"): history["tokens_per_s"],
    }
    return metrics, history


def _labels(ctx, cfg) -> dict[str, np.ndarray]:
    """Binary labels to search codes for: boolean token labels, or one class per label."""
    vals = ctx.labels.values
    default = [k for k in ("is_digit", "is_capitalised", "is_punct", "is_continuation") if k in vals]
    names = ctx.labels.pick(cfg.labels, default or list(ctx.cfg.data.labels))
    out = {}
    for name in names:
        y = vals[name]
        classes = np.unique(y)
        for c in (classes[1:] if len(classes) == 2 else classes[:4]):
            cls = ctx.labels.names.get(name, [str(int(v)) for v in range(int(c) + 1)])[int(c)]
            out[name if len(classes) == 2 else f"{name}={cls}"] = y == c
    return out


def run(ctx, cfg, report) -> None:
    from hiddenlens.codebook import attach

    if ctx.cfg.cache.rows == "position":
        report.add_section("Codebook features").add_text(
            "Not applicable: rows are spatial positions of a conv map; a codebook acts on the "
            "last dimension of the hooked tensor, which is not the channel dimension there.")
        return
    hook = cfg.hook or ctx.middle_hook()
    ctx.hooks_for([hook])
    init = ctx.rows(hook, ctx.sample(cfg.init_rows, seed_offset=3))
    t0 = time.perf_counter()
    cb = attach(ctx.handle, hook, cfg.n_codes, cfg.k, init={hook: init}, kmeans_iter=10, seed=ctx.seed)
    try:
        metrics, history = _finetune(ctx, cb, cfg)
        metrics[metric_key("codebook", "kmeans_and_finetune_s")] = time.perf_counter() - t0
        rows = ctx.rows(hook, np.arange(min(cfg.search_rows, len(ctx.store))))
        dev = next(cb.layers[hook].parameters()).device
        codes = cb.layers[hook].encode(torch.from_numpy(rows).to(dev)).cpu().numpy()
    finally:
        cb.detach()
    _search_and_report(ctx, cfg, report, hook, codes, rows, metrics, history)


def _search_and_report(ctx, cfg, report, hook, codes, rows, metrics, history) -> None:
    from hiddenlens.codebook import code_usage, compare_with_neurons, layer_stats, search_codes
    from hiddenlens.viz.codebook import plot_code_usage, plot_code_vs_neuron, plot_losses

    metrics.update(layer_stats(codes, cfg.n_codes, name=hook))
    table, names, code_f1, neuron_f1 = [], [], [], []
    for prop, mask in _labels(ctx, cfg).items():
        mask = np.asarray(mask[: len(codes)], dtype=bool)
        if not mask.any() or mask.all():
            continue
        cmp = compare_with_neurons(codes, rows, mask, cfg.n_codes, name=prop)
        metrics.update({k if k.startswith("codebook/") else f"codebook/{k}": v for k, v in cmp.items()})
        names.append(prop)
        code_f1.append(next(v for k, v in cmp.items() if "code_f1" in k))
        neuron_f1.append(next(v for k, v in cmp.items() if "neuron_f1" in k))
        table += [{"label": prop, **m.to_dict()} for m in search_codes(codes, mask, cfg.n_codes, top=3)]
    what = ("the mean-pooled sentence embedding close to the original (1 - cosine)"
            if is_text_encoder(ctx.handle) else
            "the next-token distribution close to the original (KL)"
            if is_language_model(ctx.handle) else "the output close to the original (relative squared error)")
    sec = report.add_section("Codebook features")
    steps = f"{int(history['steps'])} steps"
    if history.get("time_limited"):  # say the cap, not only the count (a cap is a setting)
        steps = (f"{int(history['steps'])} of {cfg.steps} steps (stopped at the "
                 f"max_seconds = {cfg.max_seconds:g} s wall-clock cap)")
    sec.add_text(
        f"A codebook of {cfg.n_codes} codes (cosine, top-{cfg.k}) replaces the output of {hook}; "
        f"codes were initialised by k-means on {cfg.init_rows} cached rows and fine-tuned for "
        f"{steps} with the model frozen, keeping {what}. Code search over "
        f"{len(codes):,} rows: per label, the codes with the best F1, and the best single code "
        "against the best single neuron of the raw activation (best threshold, either sign). A "
        "code is one of k active per row, so its F1 is bounded by how the label splits across codes."
    )
    sec.add_metrics(metrics)
    if table:
        sec.add_table(table, caption="top codes per label")
    if names:
        sec.add_figure(plot_code_vs_neuron(dict(zip(names, zip(code_f1, neuron_f1)))),
                       "codebook_search")
    sec.add_figure(plot_code_usage(code_usage(codes, cfg.n_codes)), "codebook_usage")
    sec.add_figure(plot_losses({"distillation": history["loss"]}, title="distillation"),
                   "codebook_finetune")
