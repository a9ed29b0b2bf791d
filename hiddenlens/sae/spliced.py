"""Spliced evaluation: run the model with the SAE reconstruction patched in.

Compares three forward passes per batch: clean, reconstruction spliced in at the hook
point, and the activation zero-ablated (the reference for "loss recovered"; Bricken et
al. 2023, Gao et al. 2024). Language models (outputs with logits): CE loss of each pass,
CE-loss score and KL(p_clean || p). Sentence encoders (MiniLM): cosine between the spliced
(or zero-ablated) and clean mean-pooled, normalised sentence embeddings.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from hiddenlens.sae.evaluation import kl_and_ce


def _logits(out):
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, torch.Tensor) and out.dim() == 3:
        return out
    return None


def _batches(handle, data, batch_size: int):
    if isinstance(data, dict):
        yield data
        return
    if isinstance(data, torch.Tensor):
        for i in range(0, data.shape[0], batch_size):
            yield data[i : i + batch_size]
        return
    texts = list(data)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("data must be a list of texts, a tokenised dict or a tensor")
    for i in range(0, len(texts), batch_size):
        yield handle.tokenize(texts[i : i + batch_size])


def _three_runs(handle, hook: str, sae, batch):
    from hiddenlens.hooks import patch

    clean = handle.forward(batch)
    with patch(handle, {hook: lambda a: sae.reconstruct(a)}):
        spliced = handle.forward(batch)
    with patch(handle, {hook: torch.zeros_like}):
        zero = handle.forward(batch)
    return clean, spliced, zero


@torch.no_grad()
def spliced_metrics(
    sae, model, hook: str, data, *, downstream: Callable | None = None, batch_size: int = 16
) -> dict[str, float]:
    """Downstream metrics with the reconstruction spliced in (keys without hook suffix)."""
    from hiddenlens.hooks import ModelHandle, load_model

    handle = model if isinstance(model, ModelHandle) else load_model(model)
    sums: dict[str, float] = {}

    def add(key, value):
        sums[key] = sums.get(key, 0.0) + value

    mode = None
    for batch in _batches(handle, data, batch_size):
        clean, spliced, zero = _three_runs(handle, hook, sae, batch)
        if downstream is not None:
            mode = "custom"
            for name, o in (("clean", clean), ("spliced", spliced), ("zero", zero)):
                add(f"downstream_{name}", float(downstream(o, batch)))
            add("n_batches", 1.0)
        elif _logits(clean) is not None and isinstance(batch, dict):
            mode = "lm"
            ids = batch["input_ids"]
            mask = batch.get("attention_mask", torch.ones_like(ids))
            ce_c, _, n = kl_and_ce(_logits(clean), _logits(clean), ids, mask)
            ce_s, kl_s, _ = kl_and_ce(_logits(clean), _logits(spliced), ids, mask)
            ce_z, kl_z, _ = kl_and_ce(_logits(clean), _logits(zero), ids, mask)
            for k, v in (
                ("ce_clean", ce_c),
                ("ce_spliced", ce_s),
                ("ce_zero", ce_z),
                ("kl_spliced", kl_s),
                ("kl_zero", kl_z),
                ("n_tokens", n),
            ):
                add(k, v)
        else:
            mode = "embedding"
            from hiddenlens.hooks import pool_embeddings

            mask = batch["attention_mask"]
            e = [pool_embeddings(o, mask) for o in (clean, spliced, zero)]
            add("embed_cos_spliced", float(F.cosine_similarity(e[0], e[1], dim=-1).sum()))
            add("embed_cos_zero", float(F.cosine_similarity(e[0], e[2], dim=-1).sum()))
            add("n_sentences", float(mask.shape[0]))
    return _finish(mode, sums)


def _finish(mode, s: dict[str, float]) -> dict[str, float]:
    if mode == "custom":
        nb = s.pop("n_batches")
        out = {k: v / nb for k, v in s.items()}
        den = out["downstream_zero"] - out["downstream_clean"]
        out["downstream_score"] = (
            (out["downstream_zero"] - out["downstream_spliced"]) / den if den else float("nan")
        )
        return out
    if mode == "lm":
        n = max(s.pop("n_tokens"), 1)
        out = {k: v / n for k, v in s.items()}
        den = out["ce_zero"] - out["ce_clean"]
        out["ce_loss_score"] = (out["ce_zero"] - out["ce_spliced"]) / den if den else float("nan")
        out["kl_score"] = (
            1.0 - out["kl_spliced"] / out["kl_zero"] if out["kl_zero"] else float("nan")
        )
        return out
    if mode == "embedding":
        n = max(s.pop("n_sentences"), 1)
        out = {k: v / n for k, v in s.items()}
        den = 1.0 - out["embed_cos_zero"]
        out["embed_cos_score"] = (
            (out["embed_cos_spliced"] - out["embed_cos_zero"]) / den if den else float("nan")
        )
        return out
    raise ValueError("no data batches to evaluate the spliced metrics on")
