"""Demo section: a TopK sparse autoencoder on one MiniLM layer.

Trains a TopK SAE (Gao et al. 2024) on the cached activations of one encoder layer,
evaluates reconstruction and sparsity, splices the reconstruction back into MiniLM and
compares sentence embeddings with the clean ones, and shows the density histogram, the
top-activating token contexts of a few latents and the latents that best match simple
token properties (F1 of "latent fires" vs the property).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from hiddenlens.sae import SAEConfig, TrainConfig, evaluate, train
from hiddenlens.sae.inspect import top_activating
from hiddenlens.viz.sae import (
    plot_decoder_cosines,
    plot_density_histogram,
    plot_density_histogram_interactive,
    plot_top_activations,
)

PROPERTIES = ("is_digit", "is_capitalised", "is_punct", "is_continuation")


def _settings(ctx) -> dict:
    if ctx.fast:
        return dict(
            d_sae=256, k=8, tokens=256 * 20, batch=256, eval_rows=2000, texts=8, latents=2, n_top=5
        )
    return dict(
        d_sae=1536,
        k=16,
        tokens=2048 * 300,
        batch=2048,
        eval_rows=10000,
        texts=32,
        latents=4,
        n_top=8,
    )


@torch.no_grad()
def property_f1(sae, store, hook: str, labels: dict, n_rows: int) -> list[dict]:
    """Best single latent per boolean token property: F1 of (latent > 0) vs the label."""
    x = torch.from_numpy(np.array(store.rows(hook, 0, n_rows), dtype=np.float32))
    fired = (sae.encode(x) > 0).float()  # [n, d_sae]
    rows = []
    for name in PROPERTIES:
        if name not in labels:
            continue
        y = torch.from_numpy(np.asarray(labels[name][:n_rows], dtype=np.float32))
        tp = y @ fired
        f1 = 2 * tp / (fired.sum(0) + y.sum()).clamp_min(1)
        best = int(f1.argmax())
        rows.append(
            {
                "property": name,
                "base_rate": float(y.mean()),
                "best_latent": best,
                "f1": float(f1[best]),
                "latent_density": float(fired[:, best].mean()),
            }
        )
    return rows


def _pick_latents(density: np.ndarray, n: int) -> list[int]:
    """Latents that fire often enough to show contexts, but are not dense."""
    ok = np.where((density > 1e-3) & (density < 0.05))[0]
    ok = ok if ok.size >= n else np.argsort(-density)[: n * 4]
    return [int(i) for i in ok[np.argsort(-density[ok])][:n]]


def run(ctx) -> None:
    s = _settings(ctx)
    hook = "encoder.layer.3" if "encoder.layer.3" in ctx.hooks else ctx.hooks[len(ctx.hooks) // 2]
    t0 = time.perf_counter()
    n_rows = len(ctx.store)
    tokens = max(s["batch"], min(s["tokens"], n_rows * 5))
    cfg = SAEConfig(
        d_in=ctx.store.d(hook),
        d_sae=s["d_sae"],
        architecture="topk",
        k=s["k"],
        model_id=getattr(ctx.handle, "model_id", None),
    )
    tcfg = TrainConfig(
        total_tokens=tokens,
        batch_size=s["batch"],
        lr=2e-3,
        lr_warmup_steps=10,
        dead_tokens=max(n_rows, s["batch"]),
        seed=ctx.seed,
        log_every=5,
        num_threads=1,  # faster on the shared 2-core box (many small sparse ops per step)
    )
    sae = train(ctx.store, hook, cfg, tcfg, out_dir=ctx.out_dir / "sae")
    train_s = time.perf_counter() - t0
    metrics = evaluate(
        sae,
        ctx.store,
        hook,
        model=ctx.handle,
        data=ctx.texts[: s["texts"]],
        max_rows=s["eval_rows"],
    )
    ctx.artifacts["sae"], ctx.artifacts["sae_hook"] = sae, hook
    density = sae.feature_density_.numpy()
    latents = _pick_latents(density, s["latents"])
    tops = top_activating(
        sae,
        ctx.store,
        hook,
        latents,
        n=s["n_top"],
        tokenizer=ctx.handle.tokenizer,
        max_rows=s["eval_rows"],
    )
    f1_rows = property_f1(sae, ctx.store, hook, ctx.token_labels, min(n_rows, s["eval_rows"]))
    _report(ctx, hook, sae, metrics, density, tops, f1_rows, train_s, tokens)
    _dashboard(ctx, sae, hook, s["eval_rows"])


def _dashboard(ctx, sae, hook: str, n_rows: int) -> None:
    """A searchable page of every latent (contexts, histograms) + Neuronpedia-style JSON."""
    from hiddenlens.report import write_json
    from hiddenlens.report.dashboard import write_dashboard
    from hiddenlens.report.features import encode_rows, feature_cards, to_neuronpedia

    acts = encode_rows(sae.encode, ctx.store, hook, max_rows=n_rows)
    meta = ctx.store.meta
    n = acts.shape[0]
    cards = feature_cards(
        acts, meta["token_id"][:n], meta["sample_idx"][:n], ctx.handle.tokenizer, n_top=8
    )
    title = f"TopK SAE on MiniLM {hook}: {len(cards)} latents over {n:,} token rows"
    write_dashboard(
        cards, ctx.out_dir / "sae_dashboard.html", title=title, tokenizer=ctx.handle.tokenizer
    )
    write_json(
        ctx.out_dir / "sae_neuronpedia.json",
        to_neuronpedia(cards, model_id="all-MiniLM-L6-v2", layer=hook),
    )
    ctx.report.sections[-1].add_text(
        "[Open the feature dashboard](sae_dashboard.html) (every latent: density, activation "
        "histogram, top and quantile contexts; searchable) — also exported as "
        "Neuronpedia-style JSON in `sae_neuronpedia.json`."
    )


def _report(ctx, hook, sae, metrics, density, tops, f1_rows, train_s, tokens) -> None:
    sec = ctx.report.add_section(
        f"Sparse autoencoder ({hook})",
        text=(
            f"A TopK SAE (k={sae.cfg.k}, {sae.cfg.d_sae} latents) trained on {tokens:,} "
            f"token activations of `{hook}` in {train_s:.0f} s. Spliced: the reconstruction "
            "replaces the layer output inside MiniLM; `embed_cos_spliced` is the mean cosine "
            "between spliced and clean sentence embeddings (`embed_cos_zero`: the layer "
            "zero-ablated; score = recovered fraction). FVU uses the centred variance."
        ),
    )
    keys = (
        "fvu",
        "explained_variance",
        "l0",
        "cosine",
        "l2_ratio",
        "relative_reconstruction_bias",
        "dead_fraction",
        "dense_fraction",
        "embed_cos_spliced",
        "embed_cos_zero",
        "embed_cos_score",
    )
    wanted = [f"sae/{k}/{hook}" for k in keys]
    headline = {k: metrics[k] for k in wanted if k in metrics}
    sec.add_metrics(headline)
    ctx.report.add_metrics(
        {k: v for k, v in headline.items() if "fvu" in k or "embed_cos_spliced" in k}
    )
    sec.add_figure(
        plot_density_histogram(density, title=f"Feature density, {hook}"),
        "sae_density",
        interactive=plot_density_histogram_interactive(density, title=f"Feature density, {hook}"),
        caption="Firing frequency of each latent during training.",
    )
    sec.add_figure(
        plot_decoder_cosines(sae.W_dec.detach().numpy(), latents=np.argsort(-density)[:96]),
        "sae_decoder_cosines",
        caption="Cosines between the decoder directions of the 96 most frequent latents "
        "(hover for values); bright off-diagonal cells are near-duplicate features.",
    )
    if f1_rows:
        sec.add_table(f1_rows, caption="Best single latent per token property (F1).")
    for lat, rows in tops.items():
        if rows:
            sec.add_figure(
                plot_top_activations(rows, title=f"Latent {lat}"),
                f"sae_latent_{lat}",
                caption=f"Top-activating tokens of latent {lat} ([[token]] in context).",
            )
