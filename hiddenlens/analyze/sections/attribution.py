"""Section: which inputs, layers and SAE latents drive the model's output.

The target depends on the model kind: for a text encoder, the cosine of each sentence
embedding with a reference sentence's; for a language model, the mean log-probability of
the actual next tokens; for any other module, the logit of the predicted class (or the
output itself when it is one number per example). Integrated gradients at the input
embedding (text encoders; completeness error reported), gradient x activation and layer IG
per hook (Sundararajan et al. 2017), activation vs attribution patching on a one-word edit
(text; Nanda 2023), latent x gradient for every trained SAE, and for ``nn.Sequential`` image
models DiFull at the input and each cached conv hook, with AggAtt of the input maps (Rao et
al. 2022, ML-Att; :mod:`~hiddenlens.analyze.sections.attribution_grid`), and the missingness
bias of input masking (Balasubramanian & Feizi 2023;
:mod:`~hiddenlens.analyze.sections.attribution_image`). Language models also get per-head
direct logit attribution and a back-patching sweep (Biran et al. 2024;
:mod:`~hiddenlens.analyze.sections.attribution_lm`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hiddenlens._keys import metric_key
from hiddenlens.analyze.context import is_language_model, is_text_encoder, model_kind

USES_SAE = True


@dataclass
class Setup:
    batch: Any  # the model input: a tokenised dict or a tensor
    target: Any  # output -> Tensor[batch] (handles inputs repeated step-major for IG)
    what: str  # the target, in words
    n: int  # examples


def _tile(batch: dict, reps: int) -> dict:
    return {k: v.repeat(reps, *[1] * (v.ndim - 1)) for k, v in batch.items()}


def _texts(ctx, n: int) -> list[str]:
    """Short, distinct sentences (long documents make token maps unreadable)."""
    picked = [t for t in ctx.texts if 30 <= len(t) <= 160]
    return (picked or list(ctx.texts))[:n]


def _text_batch(handle, texts, seq_len) -> dict:
    enc = handle.tokenize(texts, seq_len=seq_len)
    return {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _lm_target(batch: dict):
    """Mean log p(actual next token) over real positions, per example."""
    from hiddenlens.attribution._core import first_tensor

    n = batch["input_ids"].shape[0]

    def fn(out):
        logits = first_tensor(out)
        b = _tile(batch, logits.shape[0] // n)
        lp = torch.log_softmax(logits[:, :-1].float(), -1)
        ids, mask = b["input_ids"][:, 1:].to(lp.device), b["attention_mask"][:, 1:].to(lp.device)
        tok = lp.gather(-1, ids.unsqueeze(-1)).squeeze(-1) * mask
        return tok.sum(1) / mask.sum(1).clamp_min(1)

    return fn


def _encoder_target(handle, batch: dict, reference: str):
    from hiddenlens.attribution import similarity_target

    target = similarity_target(handle.embed([reference])[0])
    n = batch["input_ids"].shape[0]

    def fn(out):
        hidden = out[0] if isinstance(out, tuple) else out.last_hidden_state
        return target(out, _tile(batch, hidden.shape[0] // n))

    return fn, target


def _module_target(handle, x):
    from hiddenlens.attribution._core import first_tensor

    with torch.no_grad():
        out = first_tensor(handle.forward(x))
    if out.ndim == 2 and out.shape[1] > 1:
        cls = out.argmax(1)

        def fn(o):
            t = first_tensor(o)
            return t.gather(1, cls.repeat(t.shape[0] // len(cls)).to(t.device)[:, None]).squeeze(1)

        return fn, "the logit of the class the model predicts"
    return (lambda o: first_tensor(o).reshape(first_tensor(o).shape[0], -1).sum(1)), "the output (summed)"


def setup(ctx, cfg) -> Setup:
    handle = ctx.handle
    if ctx.texts is not None:
        texts = _texts(ctx, cfg.examples)
        batch = _text_batch(handle, texts, cfg.seq_len)
        if is_language_model(handle):
            return Setup(batch, _lm_target(batch), "the mean log-probability of the actual next tokens", len(texts))
        if is_text_encoder(handle):
            fn, _ = _encoder_target(handle, batch, cfg.reference)
            return Setup(batch, fn, f"the cosine of each sentence embedding with {cfg.reference!r}", len(texts))
    data = ctx.data.data[: cfg.examples]
    x = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    if is_language_model(handle):
        from hiddenlens.analyze.sections.sae import token_batch

        batch = token_batch(ctx, cfg.examples)
        return Setup(batch, _lm_target(batch), "the mean log-probability of the actual next tokens",
                     len(batch["input_ids"]))
    fn, what = _module_target(handle, x)
    return Setup(x, fn, what, len(x))


def _layers(ctx, cfg, sec, s: Setup, hooks) -> dict[str, float]:
    from hiddenlens.attribution import layer_gradient_x_activation, layer_integrated_gradients
    from hiddenlens.viz.attribution import plot_layer_scores

    gxa = layer_gradient_x_activation(ctx.handle, s.batch, hooks, target=s.target)
    mask = s.batch["attention_mask"].bool() if isinstance(s.batch, dict) else None
    totals = {}
    for name, a in gxa.items():
        attr = a.attributions
        per_row = attr.sum(-1)[mask] if mask is not None and attr.ndim == 3 else attr
        totals[name] = float(per_row.sum()) / s.n
    out = {metric_key("attribution", "grad_x_act_total", k): v for k, v in totals.items()}
    last, scale = list(totals)[-1], max(abs(v) for v in totals.values()) or 1.0
    notes = {}
    if is_text_encoder(ctx.handle) and abs(totals[last]) < 1e-4 * scale:
        # Euler: grad . h = 0 for a target that is 0-homogeneous in h (normalised pooling)
        notes[last] = "≈0 by construction: the target is scale-invariant in this layer"
    sec.add_figure(plot_layer_scores(totals, ylabel="sum of grad x act per example", notes=notes),
                   "layer_gxa",
                   caption="gradient x activation summed over positions and features, per hook")
    base = _pad_baseline(ctx, s) if is_text_encoder(ctx.handle) and ctx.texts is not None else None
    for name in dict.fromkeys([hooks[0], hooks[-1]]):
        lig = layer_integrated_gradients(ctx.handle, s.batch, name, target=s.target,
                                         n_steps=max(4, cfg.n_steps // 2), baseline_inputs=base)
        out[metric_key("attribution", "layer_ig_max_abs_delta", name)] = float(lig.delta.abs().max())
        out[metric_key("attribution", "layer_ig_total", name)] = float(lig.attributions.sum()) / s.n
    return out


def _pad_baseline(ctx, s: Setup) -> dict:
    """The same sentences with every word replaced by [PAD] (a zero hidden state sits where
    LayerNorm and the normalised pooling are singular, which breaks the IG path)."""
    ids = s.batch["input_ids"]
    tok = ctx.handle.tokenizer
    special = torch.tensor([tok.get_special_tokens_mask(r, already_has_special_tokens=True)
                            for r in ids.tolist()], dtype=torch.bool)
    return dict(s.batch, input_ids=torch.where(special, ids, tok.pad_token_id))


def _tokens(ctx, cfg, sec, s: Setup) -> dict[str, float]:
    """IG per token at the embedding output (text encoders)."""
    from hiddenlens.attribution import similarity_target, token_attributions
    from hiddenlens.viz.attribution import plot_token_attributions

    texts = _texts(ctx, cfg.examples)
    target = similarity_target(ctx.handle.embed([cfg.reference])[0])
    ig = token_attributions(ctx.handle, texts, target, n_steps=cfg.n_steps, seq_len=cfg.seq_len)
    sec.add_figure(plot_token_attributions(ig.scores, tokens=ig.tokens), "token_ig", caption="IG per token")
    sec.add_table(
        [{"text": t[:60], "top tokens": ", ".join(f"{w} ({v:+.3f})" for w, v in ig.top(i, 4))}
         for i, t in enumerate(texts)],
        caption="largest |IG| tokens",
    )
    return {metric_key("attribution", "ig_completeness_max_abs_delta"): float(np.abs(ig.delta).max()),
            metric_key("attribution", "ig_mean_target"): float(ig.target_values.mean())}


def _patching(ctx, cfg, sec, hooks) -> tuple[dict[str, float], str | None]:
    """Clean vs corrupted sentence: where does restoring the clean state move the target?"""
    from hiddenlens.attribution import activation_patching, attribution_patching, compare_patching
    from hiddenlens.viz.attribution import plot_patching

    handle = ctx.handle
    clean, corrupt = (_text_batch(handle, [t], cfg.seq_len) for t in cfg.pair)
    if clean["input_ids"].shape != corrupt["input_ids"].shape:
        return {}, f"the two texts of attribution.pair tokenise to different lengths {cfg.pair}"
    if torch.equal(clean["input_ids"], corrupt["input_ids"]):
        return {}, (f"the two texts of attribution.pair {cfg.pair} tokenise to the same ids "
                    "(words outside the vocabulary?), so there is no gap to restore")
    if is_language_model(handle):
        tgt = _lm_target(clean)
        metric = lambda out: tgt(out).sum()  # noqa: E731
    else:
        _, sim = _encoder_target(handle, clean, cfg.pair[0])
        metric = lambda out: sim(out, clean).sum()  # noqa: E731
    act = activation_patching(handle, clean, corrupt, hooks, metric)
    att = attribution_patching(handle, clean, corrupt, hooks, metric)
    tokens = handle.tokenizer.convert_ids_to_tokens(clean["input_ids"][0].tolist())
    for res, name in ((act, "activation patching"), (att, "attribution patching")):
        sec.add_figure(plot_patching(res.normalised(), position_labels=tokens, title=name),
                       name.replace(" ", "_"),
                       caption=f"'{cfg.pair[1]}' -> '{cfg.pair[0]}': share of the gap restored")
    found = compare_patching(act, att).items()
    return {k if k.startswith("attribution/") else metric_key("attribution", f"patching_{k}"): v
            for k, v in found}, None


def _sae(ctx, sec, s: Setup) -> dict[str, float]:
    from hiddenlens.attribution import sae_latent_attribution

    out = {}
    for hook, sae in ctx.saes.items():
        res = sae_latent_attribution(ctx.handle, s.batch, hook, sae, target=s.target)
        attr = res.attributions
        lat = res.info["latents"]
        if isinstance(s.batch, dict) and attr.ndim == 3:
            mask = s.batch["attention_mask"].bool()
            attr, lat = attr[mask], lat[mask]
        attr, lat = attr.reshape(-1, attr.shape[-1]), lat.reshape(-1, lat.shape[-1])
        per_latent = attr.sum(0)
        top = torch.argsort(per_latent.abs(), descending=True)[:8]
        sec.add_table(
            [{"latent": int(i), "attribution": round(float(per_latent[i]), 4),
              "active rows": int((lat[:, i] > 0).sum())} for i in top],
            caption=f"SAE latents at {hook} with the largest total latent x gradient",
        )
        out[metric_key("attribution", "sae_latent_attr_top1", hook)] = float(per_latent[top[0]])
        out[metric_key("attribution", "sae_n_latents_attributed", hook)] = float((per_latent != 0).sum())
    return out


def _missingness(ctx, cfg, sec) -> tuple[dict[str, float], str]:
    from hiddenlens.analyze.sections.attribution_image import run_missingness

    if not cfg.missingness_sizes:
        return {}, "Missingness bias not run: attribution.missingness_sizes is empty."
    data = ctx.data.data[: cfg.missingness_examples]
    x = data if isinstance(data, torch.Tensor) else torch.as_tensor(np.asarray(data))
    return run_missingness(ctx, cfg, sec, x.float().to(ctx.handle_device))


def run(ctx, cfg, report) -> None:
    hooks = ctx.hooks_for(cfg.hooks)
    s = setup(ctx, cfg)
    sec = report.add_section("Attribution: inputs, layers and latents")
    notes = [f"Target: {s.what}, on {s.n} examples."]
    metrics = {}
    if is_text_encoder(ctx.handle) and ctx.texts is not None:
        metrics |= _tokens(ctx, cfg, sec, s)
    else:
        notes.append("Per-token IG at the input embedding is shown for text encoders only.")
    metrics |= _layers(ctx, cfg, sec, s, hooks)
    if ctx.texts is not None and (is_language_model(ctx.handle) or is_text_encoder(ctx.handle)):
        m, why = _patching(ctx, cfg, sec, hooks)
        metrics |= m
        if why:
            notes.append(f"Patching not run: {why}.")
    else:
        notes.append("Activation patching needs a clean/corrupted text pair: not run on this data.")
    if isinstance(s.batch, torch.Tensor) and s.batch.ndim == 4:
        from hiddenlens.analyze.sections.attribution_grid import run_difull

        m, why = run_difull(ctx, cfg, sec, s.batch, hooks)
        metrics |= m
        if why:
            notes.append(f"DiFull not run: {why}.")
        m, note = _missingness(ctx, cfg, sec)
        metrics |= m
        notes.append(note)
    else:
        notes.append("DiFull and missingness bias not run: they tile and mask images, and these "
                     "examples are not [N, C, H, W] images.")
    if is_language_model(ctx.handle):
        from hiddenlens.analyze.sections.attribution_lm import run_lm

        n = max(cfg.examples, cfg.back_patching_queries)
        m, lm_notes = run_lm(ctx, cfg, sec, _texts(ctx, n) if ctx.texts is not None else None, hooks)
        metrics |= m
        notes += lm_notes
    else:
        notes.append(f"Per-head DLA and back-patching not run: they explain next-token "
                     f"predictions, and this {model_kind(ctx.handle)} makes none.")
    if ctx.saes and ctx.cfg.cache.rows != "position":
        metrics |= _sae(ctx, sec, s)
    elif ctx.saes:
        notes.append("SAE-latent attribution not run: the SAE reads per-position rows of a conv "
                     "map, not the hooked tensor's last dimension.")
    sec.add_text(" ".join(notes) + " Layer IG: the path from a zero activation (a padding-token "
                 "sentence for encoders); delta = completeness error.")
    sec.add_metrics(metrics)
