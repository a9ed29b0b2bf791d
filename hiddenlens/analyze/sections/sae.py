"""Section: the sparse autoencoders of the SAE stage, evaluated.

Per hook: reconstruction and sparsity on the store rows; the reconstruction spliced back
into the model — CE loss clean / spliced / zero-ablated, CE-loss score and KL for language
models (Bricken et al. 2023; Gao et al. 2024), sentence-embedding cosine for text encoders,
output error recovered for other modules; the density histogram, decoder cosines, the
latents that best match each label (F1 of "latent fires" vs the class) and the
top-activating contexts of a few latents; a searchable feature dashboard.
"""

from __future__ import annotations

import numpy as np
import torch

from hiddenlens.analyze.context import is_language_model, is_text_encoder, safe_name

USES_SAE = True
MAX_F1_ROWS = 12


def _module_downstream(handle):
    """Squared error of the output vs the clean output, per example (a loss: lower is better)."""
    from hiddenlens.attribution._core import first_tensor

    def loss(output, batch) -> float:
        clean = first_tensor(handle.forward(batch)).float()
        out = first_tensor(output).float()
        return float(((out - clean) ** 2).flatten(1).sum(1).mean())

    return loss


def token_batch(ctx, n: int) -> dict:
    """The first ``n`` token-id sequences as a model batch (padding masked)."""
    ids = torch.as_tensor(ctx.data.data[:n]).long()
    mask = ctx.data.mask[:n].long() if ctx.data.mask is not None else torch.ones_like(ids)
    return {"input_ids": ids, "attention_mask": mask}


def spliced_setup(ctx, n_docs: int) -> tuple[dict, str | None]:
    """kwargs for ``sae.evaluate``'s spliced metrics, or why they do not apply."""
    handle = ctx.handle
    if ctx.cfg.cache.rows == "position":
        return {}, ("rows are spatial positions of a conv map; splicing an SAE back needs the "
                    "map layout, which the spliced evaluation does not rebuild")
    data = ctx.data.data[:n_docs]
    if ctx.texts is not None:
        if is_language_model(handle) or is_text_encoder(handle):
            return {"model": handle, "data": list(data)}, None
        return {}, "the model is neither a language model nor a Hugging Face text encoder"
    x = torch.as_tensor(np.asarray(data)) if not isinstance(data, torch.Tensor) else data
    if is_language_model(handle):
        return {"model": handle, "data": token_batch(ctx, n_docs)}, None
    return {"model": handle, "data": x, "downstream": _module_downstream(handle)}, None


@torch.no_grad()
def label_f1(sae, rows: np.ndarray, labels: dict[str, np.ndarray], names: dict) -> list[dict]:
    """Best single latent per label class: F1 of (latent > 0) vs (label == class)."""
    fired = (sae.encode(torch.from_numpy(rows)) > 0).float()  # [n, d_sae]
    out = []
    for name, y_all in labels.items():
        classes = np.unique(y_all)
        for c in (classes[1:] if len(classes) == 2 else classes)[:4]:
            y = torch.from_numpy((y_all == c).astype(np.float32))
            f1 = 2 * (y @ fired) / (fired.sum(0) + y.sum()).clamp_min(1)
            best = int(f1.argmax())
            cls = names.get(name, [])[int(c)] if name in names else str(int(c))
            out.append({
                "label": name if len(classes) == 2 else f"{name}={cls}",
                "base_rate": round(float(y.mean()), 4),
                "best_latent": best,
                "f1": round(float(f1[best]), 4),
                "latent_density": round(float(fired[:, best].mean()), 4),
            })
    return out[:MAX_F1_ROWS]


def _pick_latents(density: np.ndarray, n: int) -> list[int]:
    """Latents that fire often enough to show contexts, but are not dense."""
    ok = np.where((density > 1e-3) & (density < 0.05))[0]
    ok = ok if ok.size >= n else np.argsort(-density)[: n * 4]
    return [int(i) for i in ok[np.argsort(-density[ok])][:n]]


def _f1_labels(ctx) -> dict[str, np.ndarray]:
    """Boolean token labels for text, else the document labels (few classes only)."""
    vals = ctx.labels.values
    pick = [k for k in ("is_digit", "is_capitalised", "is_punct", "is_continuation") if k in vals]
    pick = pick or [k for k, v in vals.items() if len(np.unique(v)) <= 10]
    return {k: vals[k] for k in pick}


def _dashboard(ctx, sae, hook: str, n_rows: int, sec) -> None:
    """A searchable page of every latent (contexts, histograms) + a Neuronpedia batch."""
    from hiddenlens._io import write_json
    from hiddenlens.report.dashboard import add_logit_effects, write_dashboard
    from hiddenlens.report.features import encode_rows, feature_cards
    from hiddenlens.report.neuronpedia import NeuronpediaTarget, layer_of, to_neuronpedia
    from hiddenlens.sae.inspect import logit_effects

    meta = ctx.store.meta
    if "token_id" not in meta:
        return
    acts = encode_rows(sae.encode, ctx.store, hook, max_rows=n_rows)
    n = acts.shape[0]
    cards = feature_cards(
        acts, meta["token_id"][:n], meta["sample_idx"][:n], ctx.handle.tokenizer, n_top=8
    )
    name = f"sae_dashboard_{safe_name(hook)}"
    title = f"{sae.cfg.architecture} SAE on {ctx.handle.model_id} {hook}: {len(cards)} latents over {n:,} rows"
    unembed = ctx.handle.unembedding()
    pair = getattr(type(sae), "pair_role", None) == "target"  # a transcoder decodes elsewhere
    if unembed is not None and not pair and unembed.shape[0] == sae.cfg.d_in:
        # direct effect of each latent on the logits (W_dec @ W_U), as SAEDashboard shows
        effects = logit_effects(
            sae.W_dec.detach().cpu(), unembed.cpu(), [c.index for c in cards], top=8
        )
        add_logit_effects(cards, effects, ctx.handle.tokenizer)
    write_dashboard(cards, ctx.out_dir / f"{name}.html", title=title)
    target = NeuronpediaTarget(
        model_id=str(ctx.handle.model_id or "model"),
        layer=layer_of(hook),
        sae_set=f"hiddenlens-{sae.cfg.architecture}-{sae.cfg.d_sae}",
        n_prompts_total=int(len(np.unique(meta["sample_idx"][:n]))),
    )
    write_json(
        ctx.out_dir / f"{name}.neuronpedia.json",
        to_neuronpedia(cards, target),
    )
    sec.add_text(
        f"[Open the feature dashboard]({name}.html) (every latent: density, activation "
        "histogram, top and quantile contexts; searchable) — also exported as "
        f"a Neuronpedia upload batch (SAEDashboard's format) in `{name}.neuronpedia.json`."
    )


def run(ctx, cfg, report) -> None:
    for hook, sae in ctx.saes.items():
        _one(ctx, cfg, report, hook, sae)


def _one(ctx, cfg, report, hook, sae) -> None:
    from hiddenlens.sae import evaluate

    spliced, why_not = spliced_setup(ctx, cfg.eval_docs)
    metrics = evaluate(sae, ctx.store, hook, max_rows=cfg.eval_rows, **spliced)
    sec = report.add_section(f"Sparse autoencoder ({hook})")
    density = np.asarray(getattr(sae, "feature_density_", torch.zeros(sae.cfg.d_sae)))
    text = (
        f"A {sae.cfg.architecture} SAE ({sae.cfg.d_sae} latents"
        f"{f', k={sae.cfg.k}' if sae.cfg.k else ''}) trained on {cfg.total_tokens:,} rows of "
        f"`{hook}`; metrics over {min(cfg.eval_rows, len(ctx.store)):,} store rows (FVU uses "
        "the centred variance). "
    )
    if why_not:
        text += f"Spliced evaluation not applicable: {why_not}."
    elif is_language_model(ctx.handle):
        text += ("Spliced: the reconstruction replaces the activation inside the model; CE "
                 "loss of next-token prediction clean / spliced / zero-ablated, CE-loss score "
                 "= (CE_zero - CE_spliced) / (CE_zero - CE_clean), KL(p_clean || p_spliced).")
    elif is_text_encoder(ctx.handle):
        text += ("Spliced: cosine between spliced and clean mean-pooled sentence embeddings "
                 "(zero-ablated as the reference; score = recovered fraction). The model has "
                 "no LM head, so no CE-loss score.")
    else:
        text += ("Spliced: squared error of the model output vs the clean output, spliced and "
                 "zero-ablated; downstream_score = recovered fraction.")
    sec.add_text(text)
    sec.add_metrics(metrics)
    _figures(ctx, cfg, sec, hook, sae, density)
    if cfg.dashboard:
        _dashboard(ctx, sae, hook, cfg.eval_rows, sec)


def _figures(ctx, cfg, sec, hook, sae, density) -> None:
    from hiddenlens.sae.inspect import top_activating
    from hiddenlens.viz.sae import (
        plot_decoder_cosines,
        plot_density_histogram,
        plot_top_activations,
    )

    sec.add_figure(
        plot_density_histogram(density, title=f"Feature density, {hook}"),
        "sae_density", caption="Firing frequency of each latent during training.",
    )
    sec.add_figure(
        plot_decoder_cosines(sae.W_dec.detach().cpu().numpy(), latents=np.argsort(-density)[:96]),
        "sae_decoder_cosines",
        caption="Cosines between the decoder directions of the most frequent latents (up to "
        "96); bright off-diagonal cells are near-duplicate features.",
    )
    idx = np.arange(min(cfg.eval_rows, len(ctx.store)))
    labels = {k: v[idx] for k, v in _f1_labels(ctx).items()}
    if labels:
        rows = label_f1(sae, ctx.rows(hook, idx), labels, ctx.labels.names)
        sec.add_table(rows, caption="Best single latent per label class (F1 of latent > 0).")
    if not cfg.top_latents:
        return
    latents = _pick_latents(density, cfg.top_latents)
    tops = top_activating(sae, ctx.store, hook, latents, n=8,
                          tokenizer=ctx.handle.tokenizer, max_rows=cfg.eval_rows)
    for lat, rows in tops.items():
        if rows and "context" in rows[0]:
            sec.add_figure(
                plot_top_activations(rows, title=f"Latent {lat}"), f"sae_latent_{lat}",
                caption=f"Top-activating tokens of latent {lat} ([[token]] in context).",
            )
