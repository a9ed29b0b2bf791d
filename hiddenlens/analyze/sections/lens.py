"""Section: logit lens vs tuned lens by layer (Belrose et al. 2023, "Eliciting Latent
Predictions from Transformers with the Tuned Lens").

Where the model has an unembedding (a causal LM), each cached layer's residual is decoded
through the final norm and the unembedding, as is (logit lens) and after a learned affine
translator (tuned lens, :class:`~hiddenlens.attribution.TunedLens`), trained on the rows of
80% of the documents and scored on the others: KL to the model's final next-token
distribution and next-token perplexity per layer. Elsewhere the section says why it does not
apply.
"""

from __future__ import annotations

import numpy as np
import torch

from hiddenlens._keys import metric_key
from hiddenlens.analyze.context import is_language_model, model_kind

USES_SAE = False
HELD_OUT = 0.2  # share of documents whose rows only score the lenses


def _split(ctx, cfg) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train / held-out row indices, split by document."""
    groups = ctx.groups
    rng = np.random.default_rng(ctx.seed + 11)
    docs = np.unique(groups)
    held = rng.choice(docs, size=max(1, int(round(HELD_OUT * len(docs)))), replace=False)
    test = np.flatnonzero(np.isin(groups, held))
    train = np.flatnonzero(~np.isin(groups, held))
    pick = lambda idx, n: np.sort(rng.choice(idx, size=min(n, len(idx)), replace=False))  # noqa: E731
    return pick(train, cfg.rows), pick(test, cfg.eval_rows)


def _layers(ctx, cfg, d_model: int) -> tuple[list[str], str, list[str]]:
    """(hooks to decode, final hook, hooks left out for their width)."""
    hooks = ctx.hooks_for(cfg.hooks)
    final = cfg.final_hook or hooks[-1]
    if final not in ctx.hooks:
        raise ValueError(f"lens.final_hook {final!r} is not cached; cached: {ctx.hooks}")
    wide = [h for h in hooks if ctx.store.d(h) != d_model]
    keep = [h for h in hooks if h not in wide]
    return list(dict.fromkeys([*keep, final])), final, wide


def _final_gap(ctx, final: str, decoder) -> float:
    """Largest |log p| difference between the decoded final hook and the model's output on
    a few documents: ~0 when ``final`` is the model's last residual."""
    from hiddenlens.attribution._core import first_tensor
    from hiddenlens.hooks import capture

    handle = ctx.handle
    if ctx.texts is not None:
        batch = handle.tokenize(list(ctx.texts[:2]), seq_len=ctx.cfg.model.seq_len)
    else:
        from hiddenlens.analyze.sections.sae import token_batch

        batch = token_batch(ctx, 2)
    with torch.no_grad(), capture(handle, [final], stop_early=False) as cap:
        out = first_tensor(handle.forward(batch)).float()
    mask = batch["attention_mask"].bool().to(out.device)
    ours = decoder(cap[final].float()).log_softmax(-1)[mask]
    return float((ours - out.log_softmax(-1)[mask]).abs().max())


def _table(res) -> list[dict]:
    rows = []
    for i, hook in enumerate(res.hooks):
        row = {"layer": hook, "KL logit lens": round(float(res.kl_logit[i]), 4),
               "KL tuned lens": round(float(res.kl_tuned[i]), 4)}
        if res.ce_logit is not None:
            row |= {"ppl logit lens": round(float(res.ppl_logit[i]), 2),
                    "ppl tuned lens": round(float(res.ppl_tuned[i]), 2)}
        rows.append(row)
    return rows


def run(ctx, cfg, report) -> None:
    from hiddenlens.attribution import TunedLens, lens_decoder, next_token_ids
    from hiddenlens.viz.lens import plot_lens_comparison

    sec = report.add_section("Tuned lens vs logit lens")
    handle = ctx.handle
    if not is_language_model(handle) or handle.unembedding() is None:
        sec.add_text(f"Not run: a lens decodes a layer through the model's final norm and "
                     f"unembedding, and this {model_kind(handle)} has no unembedding.")
        return
    if handle.final_norm() is None:
        sec.add_text("Not run: a lens decodes a layer through the model's final norm, and this "
                     "model's was not found (looked for ln_final, ln_f, norm, final_layer_norm, "
                     "final_layernorm, final_norm on its base model); hiddenlens.attribution."
                     "LensDecoder(norm, W_U, b_U) builds one by hand.")
        return
    n_docs = len(np.unique(ctx.groups))
    if n_docs < 2:
        sec.add_text(f"Not run: the translators train on some documents and are scored on held-out "
                     f"ones, and this run has {n_docs} document.")
        return
    decoder = lens_decoder(handle)
    hooks, final, wide = _layers(ctx, cfg, decoder.d_model)
    train, test = _split(ctx, cfg)
    nxt = next_token_ids(ctx.store.meta)
    data = {h: ctx.rows(h, train) for h in hooks}
    lens = TunedLens(decoder, n_steps=cfg.steps, lr=cfg.lr, batch_size=cfg.batch_size,
                     seed=ctx.seed).fit(data, hooks=hooks, final_hook=final)
    res = lens.evaluate({h: ctx.rows(h, test) for h in hooks}, next_tokens=nxt[test])
    gap = _final_gap(ctx, final, decoder)
    sec.add_figure(plot_lens_comparison(res), "lens_kl",
                   caption="KL(final || lens) per layer on held-out documents (log scale)")
    if res.ce_logit is not None:
        sec.add_figure(plot_lens_comparison(res, metric="perplexity"), "lens_ppl",
                       caption="next-token perplexity per layer; dotted: the model's own")
    sec.add_table(_table(res), caption="logit lens vs tuned lens per layer (held-out rows)")
    better = res.tuned_better()[[h != final for h in res.hooks]]
    notes = [f"Translators trained {cfg.steps} SGD steps (Nesterov, lr {cfg.lr} decayed "
             f"linearly, batch {cfg.batch_size}) on {len(train)} rows; scored on {res.n_rows} "
             f"rows of {HELD_OUT:.0%} held-out documents ({res.n_tokens} with a next token). "
             f"The tuned lens is closer to the final distribution at {int(better.sum())} of "
             f"{len(better)} layers before {final}."]
    if gap > 1e-3:
        notes.append(f"Note: decoding {final} differs from the model's output by up to {gap:.3g} "
                     "in log-probability, so it is not the last residual; KL is measured to "
                     "its decoding.")
    if wide:
        notes.append(f"Left out (width is not d_model {decoder.d_model}): {', '.join(wide)}.")
    sec.add_text(" ".join(notes))
    metrics = res.to_metrics()
    metrics[metric_key("attribution", "tuned_lens_better_share")] = float(better.mean()) if len(better) else float("nan")
    metrics[metric_key("attribution", "lens_final_logprob_gap")] = gap
    sec.add_metrics(metrics)
