"""Per-document spliced evaluation of an SAE on a causal LM, and document-bootstrap CIs.

The LM's next-token CE is the downstream loss of the g-SAE (Olmo et al., "Features that
Make a Difference"): :func:`next_token_loss` is what the store's ``#grad`` rows are the
gradient of, :func:`doc_gradients` the same gradient on each held-out document (for the
g-SAE's gradient-aware selection at evaluation, :class:`GradSelected`).
:func:`per_doc_spliced` runs :func:`hiddenlens.sae.spliced.spliced_metrics` (SAELens
conventions) one document at a time, so a bootstrap can resample documents;
:func:`bootstrap_ratio` gives token-weighted means (sum of per-document sums over sum of
per-document counts) with percentile intervals from multinomial resampling of documents.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SPLICED = ("ce_clean", "ce_spliced", "ce_zero", "kl_spliced")


def next_token_loss(output, batch) -> torch.Tensor:
    """Mean next-token CE of a causal LM's ``output.logits`` [b, s, vocab] over the
    positions whose next token is real (``attention_mask``)."""
    logits = output.logits if hasattr(output, "logits") else output
    ids = batch["input_ids"].to(logits.device)
    mask = batch.get("attention_mask", torch.ones_like(ids)).to(logits.device).bool()
    m = mask[:, :-1] & mask[:, 1:]
    if not bool(m.any()):
        raise ValueError("next-token loss needs a sequence of >= 2 real tokens")
    return F.cross_entropy(logits[:, :-1][m].float(), ids[:, 1:][m])


def encode_docs(handle, texts: list[str]) -> list[dict[str, torch.Tensor]]:
    """Each document tokenised alone (cut at the model's limit): ``{"input_ids",
    "attention_mask"}`` [1, s], what every per-document pass below runs on."""
    out = []
    for text in texts:
        enc = handle.tokenize([text])
        out.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    return out


def doc_gradients(handle, hook: str, docs: list[dict]) -> list[torch.Tensor]:
    """Per document: the gradient [1, s, d] of its next-token CE at ``hook`` (clean run)."""
    from hiddenlens.hooks import capture

    out = []
    for batch in docs:
        with capture(handle, [hook], grads=True, stop_early=False) as cap:
            with torch.enable_grad():
                next_token_loss(handle.forward(batch), batch).backward()
        handle.model.zero_grad(set_to_none=True)
        out.append(cap.grads[hook].detach().clone())
    return out


class GradSelected:
    """A g-SAE whose splice chooses each token's k latents with that token's clean CE
    gradient (``encode_with_grad``), i.e. the selection it was trained with; an oracle at
    evaluation, since a deployed SAE has no gradient without a backward pass."""

    def __init__(self, sae, grad: torch.Tensor) -> None:
        self.sae, self.grad, self.cfg = sae, grad, sae.cfg

    def reconstruct(self, a: torch.Tensor) -> torch.Tensor:
        if tuple(a.shape) != tuple(self.grad.shape):
            raise ValueError(
                f"activation {tuple(a.shape)} and its gradient {tuple(self.grad.shape)} differ"
            )
        d = a.shape[-1]
        z = self.sae.encode_with_grad(a.reshape(-1, d), self.grad.reshape(-1, d))
        return self.sae.decode(z).reshape(a.shape).to(a.dtype)


def per_doc_spliced(sae, handle, hook: str, docs: list[dict], grads=None) -> dict[str, np.ndarray]:
    """{metric: [n_docs]} of ``SPLICED`` per document (means over that document's tokens).

    grads: per-document gradients (:func:`doc_gradients`) to splice with
    :class:`GradSelected` instead of the SAE's own (gradient-free) ``encode``.
    """
    from hiddenlens.sae.spliced import spliced_metrics

    rows = {key: [] for key in SPLICED}
    for i, doc in enumerate(docs):
        model = sae if grads is None else GradSelected(sae, grads[i])
        m = spliced_metrics(model, handle, hook, doc, batch_size=1)
        for key in SPLICED:
            rows[key].append(m[key])
    return {key: np.asarray(v, dtype=np.float64) for key, v in rows.items()}


def token_counts(handle, docs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(CE positions, KL positions) per document, as ``spliced_metrics`` counts them under
    SAELens's conventions (special tokens uncounted; KL at every kept position)."""
    from hiddenlens.sae.spliced import special_positions

    n_ce, n_kl = [], []
    for enc in docs:
        real = enc["attention_mask"].bool()
        keep = real & ~special_positions(enc, handle.tokenizer, True)
        n_ce.append(int((keep[:, :-1] & real[:, 1:]).sum()))
        n_kl.append(int(keep.sum()))
    return np.asarray(n_ce), np.asarray(n_kl)


def resample_counts(n_docs: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_docs] multiplicities of a bootstrap resample of the documents."""
    if n_docs < 2 or n_boot < 1:
        raise ValueError(f"a bootstrap needs >= 2 documents and >= 1 resample, got {n_docs}, {n_boot}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_docs, np.full(n_docs, 1.0 / n_docs), size=n_boot)


def bootstrap_ratio(num, den, counts: np.ndarray, ci: float = 0.95) -> dict[str, float]:
    """sum(num) / sum(den) over documents, with its percentile bootstrap interval.

    num, den: [n_docs] per-document sums (e.g. token count x mean CE increase, and the
    token count); counts: :func:`resample_counts` (the same draws for every statistic, so
    paired comparisons share resamples).
    """
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    if num.shape != den.shape or num.shape != counts.shape[1:]:
        raise ValueError(f"num {num.shape}, den {den.shape} and counts {counts.shape} disagree")
    dist = (counts @ num) / (counts @ den)
    lo, hi = np.quantile(dist, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return {"value": float(num.sum() / den.sum()), "ci_low": float(lo), "ci_high": float(hi)}
