"""Inspecting SAE latents: top-activating rows with token context, direct output effects.

Feature dashboards as in Bricken et al. 2023 ("Towards Monosemanticity"): the rows where a
latent fires hardest, shown with the surrounding tokens (from the store's ``sample_idx``
/ ``position`` / ``token_id`` row metadata), and the latent's direct effect on the output
logits, W_dec[i] @ W_U, where the model has an unembedding (the final norm is ignored).
"""

from __future__ import annotations

import numpy as np
import torch

from hiddenlens.store.source import as_source
from hiddenlens.store.top import top_rows


@torch.no_grad()
def top_activating(
    sae,
    store,
    hook: str,
    latents,
    *,
    n: int = 10,
    tokenizer=None,
    context: int = 6,
    batch_size: int = 4096,
    max_rows: int | None = None,
) -> dict[int, list[dict]]:
    """For each latent, its ``n`` highest activations over the first ``max_rows`` store rows.

    store: anything :func:`hiddenlens.store.as_source` accepts. Ties go to the earlier row.

    Each entry: latent, activation, row, and with text metadata sample_idx, position,
    token_id, and (given a tokenizer) token and context (neighbouring tokens of the same
    sample, the firing token in [[ ]]).
    """
    latents = [int(i) for i in latents]
    if any(not 0 <= i < sae.cfg.d_sae for i in latents):
        raise ValueError(f"latent indices must be in [0, {sae.cfg.d_sae}), got {latents}")
    source = as_source(store)
    if not latents:
        return {}

    def scores(x: np.ndarray) -> torch.Tensor:  # [b, L]
        return sae.encode(torch.from_numpy(np.array(x, dtype=np.float32)))[:, latents]

    top = top_rows(source, hook, scores, n, chunk_rows=batch_size, stop=max_rows)
    best_v, best_r = top.values.reshape(len(latents), -1), top.rows.reshape(len(latents), -1)
    meta = source.meta
    out: dict[int, list[dict]] = {}
    for li, lat in enumerate(latents):
        out[lat] = [
            _describe(lat, float(v), int(r), meta, tokenizer, context)
            for v, r in zip(best_v[li], best_r[li])
            if r >= 0 and v > 0
        ]
    return out


def _describe(lat, value, row, meta, tokenizer, context) -> dict:
    entry = {"latent": lat, "activation": value, "row": row}
    if "sample_idx" not in meta or "token_id" not in meta:
        return entry
    sample, tok = np.asarray(meta["sample_idx"]), np.asarray(meta["token_id"])
    entry["sample_idx"] = int(sample[row])
    entry["position"] = int(np.asarray(meta["position"])[row]) if "position" in meta else -1
    entry["token_id"] = int(tok[row])
    if tokenizer is not None:
        lo, hi = max(0, row - context), min(len(tok), row + context + 1)
        # rows of one sample are contiguous in the store; keep only the same sample
        ids = [(j, int(tok[j])) for j in range(lo, hi) if sample[j] == sample[row]]
        pieces = tokenizer.convert_ids_to_tokens([t for _, t in ids])
        entry["token"] = tokenizer.convert_ids_to_tokens([int(tok[row])])[0]
        entry["context"] = " ".join(f"[[{p}]]" if j == row else p for (j, _), p in zip(ids, pieces))
    return entry


@torch.no_grad()
def logit_effects(decoder, unembed, latents, *, top: int = 10) -> dict[int, dict[str, list]]:
    """Top promoted / suppressed output tokens of decoder rows: ``decoder[i] @ unembed``.

    decoder: ``[n_latents, d]`` (an SAE's ``W_dec``); unembed: ``[d, vocab]`` (TransformerLens
    ``W_U`` or an HF ``lm_head.weight.T``). The one home of the direct logit effect of a
    latent (SAEDashboard's "logit effects"); the report only renders what this returns.
    """
    dec, w_u = torch.as_tensor(decoder), torch.as_tensor(unembed)
    if dec.ndim != 2 or w_u.ndim != 2 or dec.shape[1] != w_u.shape[0]:
        raise ValueError(
            f"decoder [n_latents, d] and unembed [d, vocab] must share d; got "
            f"{tuple(dec.shape)} and {tuple(w_u.shape)}"
        )
    out = {}
    for lat in [int(i) for i in latents]:
        logits = dec[lat].float() @ w_u.float()
        up, down = logits.topk(min(top, logits.numel())), (-logits).topk(min(top, logits.numel()))
        out[lat] = {
            "up_ids": up.indices.tolist(),
            "up_logits": up.values.tolist(),
            "down_ids": down.indices.tolist(),
            "down_logits": (-down.values).tolist(),
        }
    return out


def direct_effect(
    sae, unembed: torch.Tensor, latents, *, top: int = 10, tokenizer=None
) -> dict[int, dict[str, list]]:
    """Top promoted / suppressed output tokens of each latent: W_dec[i] @ W_U [d_in, vocab]."""
    if unembed.shape[0] != sae.cfg.d_in:
        raise ValueError(
            f"unembed must be [d_in={sae.cfg.d_in}, vocab], got {tuple(unembed.shape)}"
        )
    out = logit_effects(sae.W_dec.detach(), unembed, latents, top=top)
    if tokenizer is not None:
        for entry in out.values():
            entry["up_tokens"] = tokenizer.convert_ids_to_tokens(entry["up_ids"])
            entry["down_tokens"] = tokenizer.convert_ids_to_tokens(entry["down_ids"])
    return out
