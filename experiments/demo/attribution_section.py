"""Demo section: which tokens, layers and SAE latents drive MiniLM's sentence embedding.

Target: cosine similarity of each text's sentence embedding with a reference sentence's.
Integrated gradients at the embedding output give per-token scores (completeness error
reported); gradient x activation and layer IG at every encoder layer give per-layer scores;
activation patching vs attribution patching on a one-word edit; SAE latents when the SAE
section trained one.
"""

from __future__ import annotations

import numpy as np
import torch

from hiddenlens.attribution import (
    activation_patching,
    attribution_patching,
    compare_patching,
    layer_gradient_x_activation,
    layer_integrated_gradients,
    sae_latent_attribution,
    similarity_target,
    token_attributions,
)
from hiddenlens.viz.attribution import plot_layer_scores, plot_patching, plot_token_attributions

SEQ_LEN = 32
PAIR = ("The cat sat on the warm mat.", "The dog sat on the warm mat.")


def _texts(ctx, n: int) -> list[str]:
    """Short, distinct corpus sentences (long documents make token maps unreadable)."""
    picked = [t for t in ctx.texts if 30 <= len(t) <= 160]
    return (picked or list(ctx.texts))[:n]


def run(ctx) -> None:
    handle = ctx.handle
    n_steps = 8 if ctx.fast else 32
    texts = _texts(ctx, 2 if ctx.fast else 4)
    reference = handle.embed(["How do I debug a Python program?"])[0]
    target = similarity_target(reference)
    sec = ctx.report.add_section(
        "Attribution: tokens, layers and latents of MiniLM",
        text=(
            "Target: cosine similarity of each sentence embedding with the reference sentence "
            "'How do I debug a Python program?'. Token scores: integrated gradients at the "
            f"embedding output ({n_steps} Gauss-Legendre steps, padding-token baseline), summed "
            "over the hidden dimension; red raises the similarity, blue lowers it. Completeness "
            "error = sum of attributions - (F(x) - F(baseline))."
        ),
    )
    ig = token_attributions(handle, texts, target, n_steps=n_steps, seq_len=SEQ_LEN)
    metrics = {
        "attribution/ig_completeness_max_abs_delta": float(np.abs(ig.delta).max()),
        "attribution/ig_mean_target": float(ig.target_values.mean()),
    }
    sec.add_figure(
        plot_token_attributions(ig.scores, tokens=ig.tokens), "token_ig", caption="IG per token"
    )
    sec.add_table(
        [
            {"text": t[:60], "top tokens": ", ".join(f"{w} ({s:+.3f})" for w, s in ig.top(i, 4))}
            for i, t in enumerate(texts)
        ],
        caption="largest |IG| tokens",
    )
    metrics.update(_layers(ctx, sec, texts, target, n_steps))
    metrics.update(_patching(ctx, sec, target))
    if "sae" in ctx.artifacts and "sae_hook" in ctx.artifacts:
        metrics.update(_sae(ctx, sec, texts, target))
    sec.add_metrics(metrics)


def _batch(handle, texts):
    enc = handle.tokenize(texts, seq_len=SEQ_LEN)
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _wrap(target, batch):
    """The demo's (output, batch) target as an output -> [batch] callable for this batch."""
    n = batch["input_ids"].shape[0]

    def fn(out):
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        reps = hidden.shape[0] // n
        return target(out, {k: v.repeat(reps, *[1] * (v.ndim - 1)) for k, v in batch.items()})

    return fn


def _layers(ctx, sec, texts, target, n_steps) -> dict[str, float]:
    batch = _batch(ctx.handle, texts)
    tgt = _wrap(target, batch)
    gxa = layer_gradient_x_activation(ctx.handle, batch, "encoder.layer.*", target=tgt)
    mask = batch["attention_mask"].bool()
    totals = {
        name: float(a.attributions.sum(-1)[mask].sum()) / len(texts) for name, a in gxa.items()
    }
    out = {f"attribution/grad_x_act_total/{k}": v for k, v in totals.items()}
    last = list(totals)[-1]
    scale = max(abs(v) for v in totals.values()) or 1.0
    notes = {}
    if abs(totals[last]) < 1e-4 * scale:  # Euler: grad . h = 0 for a 0-homogeneous target
        notes[last] = "≈0 by construction: the target is scale-invariant in this layer"
    sec.add_figure(
        plot_layer_scores(totals, ylabel="sum of grad x act per text", notes=notes),
        "layer_gxa",
        caption="gradient x activation summed over tokens and features, per encoder layer",
    )
    # baseline: the same sentences with every word replaced by [PAD] (a zero hidden state sits
    # where LayerNorm and the normalised pooling are singular, which breaks the IG path)
    enc = ctx.handle.tokenize(texts, seq_len=SEQ_LEN)
    special = enc["special_tokens_mask"].bool()
    base = dict(
        batch, input_ids=torch.where(special, batch["input_ids"], ctx.handle.tokenizer.pad_token_id)
    )
    for name in list(gxa)[:: 5 if ctx.fast else 1]:
        lig = layer_integrated_gradients(
            ctx.handle, batch, name, target=tgt, n_steps=max(4, n_steps // 2), baseline_inputs=base
        )
        out[f"attribution/layer_ig_max_abs_delta/{name}"] = float(lig.delta.abs().max())
        out[f"attribution/layer_ig_total/{name}"] = float(lig.attributions.sum()) / len(texts)
    return out


def _patching(ctx, sec, target) -> dict[str, float]:
    """Clean 'cat' vs corrupted 'dog': where does restoring the clean state move the target?"""
    handle = ctx.handle
    clean, corrupt = _batch(handle, [PAIR[0]]), _batch(handle, [PAIR[1]])
    ref = handle.embed([PAIR[0]])[0]
    tgt = similarity_target(ref)

    def metric(out):
        return tgt(out, clean).sum()

    hooks = ["encoder.layer.0", "encoder.layer.5"] if ctx.fast else "encoder.layer.*"
    act = activation_patching(handle, clean, corrupt, hooks, metric)
    att = attribution_patching(handle, clean, corrupt, hooks, metric)
    tokens = handle.tokenizer.convert_ids_to_tokens(clean["input_ids"][0].tolist())
    sec.add_figure(
        plot_patching(act.normalised(), position_labels=tokens, title="activation patching"),
        "act_patching",
        caption=f"'{PAIR[1]}' -> '{PAIR[0]}': share of the similarity gap restored",
    )
    sec.add_figure(
        plot_patching(att.normalised(), position_labels=tokens, title="attribution patching"),
        "attr_patching",
        caption="the gradient (first-order) estimate of the same map",
    )
    return compare_patching(act, att)


def _sae(ctx, sec, texts, target) -> dict[str, float]:
    sae, hook = ctx.artifacts["sae"], ctx.artifacts["sae_hook"]
    batch = _batch(ctx.handle, texts)
    res = sae_latent_attribution(ctx.handle, batch, hook, sae, target=_wrap(target, batch))
    mask = batch["attention_mask"].bool()
    per_latent = res.attributions[mask].sum(0)  # [n_latents]
    top = torch.argsort(per_latent.abs(), descending=True)[:8]
    sec.add_table(
        [
            {
                "latent": int(i),
                "attribution": round(float(per_latent[i]), 4),
                "active tokens": int((res.info["latents"][mask][:, i] > 0).sum()),
            }
            for i in top
        ],
        caption=f"SAE latents at {hook} with the largest total latent x gradient",
    )
    return {
        "attribution/sae_latent_attr_top1": float(per_latent[top[0]]),
        "attribution/sae_n_latents_attributed": float((per_latent != 0).sum()),
    }
