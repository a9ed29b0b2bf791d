"""Per-document spliced evaluation of an SAE on a causal LM, and document-bootstrap CIs.

The LM's next-token CE is the downstream loss of the g-SAE (Olmo et al., "Features that
Make a Difference"): :func:`next_token_loss` is what the store's ``#grad`` rows are the
gradient of. :func:`held_out` runs what every SAE shares once on the held-out documents
(clean and zero-ablated passes, the CE gradient at the hook for the g-SAE's
gradient-aware selection, :class:`GradSelected`); :func:`per_doc_spliced` then needs one
spliced pass per batch and reads CE and KL per document with
:func:`hiddenlens.sae.spliced.kl_and_ce` under SAELens's conventions, exactly what
``spliced_metrics`` pools (a test checks the token-weighted means agree), so a bootstrap
can resample documents. :func:`bootstrap_ratio` gives token-weighted means (sum of
per-document sums over sum of per-document counts) with percentile intervals from
multinomial resampling of documents.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class HeldOut:
    """Held-out documents in padded batches (sorted by length, so little padding) with
    what is the same for every SAE, computed once: the clean logits, each document's clean
    and zero-ablated CE, the counted positions and the CE gradient at the hook.

    batches: ``{"input_ids", "attention_mask"}`` [b, s]; special: [b, s] positions left
    unspliced and uncounted (SAELens's special tokens); clean: logits [b, s, vocab];
    grads: [b, s, d] gradient of the batch's :func:`next_token_loss` (the same loss the
    training store's ``#grad`` rows are the gradient of); n_ce / n_kl: [n_docs] counted
    CE / KL positions; ce_clean / ce_zero: [n_docs] per-document means.
    """

    batches: list[dict]
    special: list[torch.Tensor]
    clean: list[torch.Tensor]
    grads: list[torch.Tensor]
    n_ce: np.ndarray
    n_kl: np.ndarray
    ce_clean: np.ndarray
    ce_zero: np.ndarray


def _per_row(clean, logits, batch, special) -> list[tuple[float, int, float, int]]:
    """(CE sum, CE count, KL sum, KL count) of each row, by ``kl_and_ce`` (SAELens's rules)."""
    from hiddenlens.sae.spliced import kl_and_ce

    ids, real = batch["input_ids"], batch["attention_mask"].bool()
    keep = real & ~special
    rows = range(ids.shape[0])
    return [kl_and_ce(clean[[i]], logits[[i]], ids[[i]], keep[[i]], real[[i]]) for i in rows]


@torch.no_grad()
def held_out(handle, hook: str, texts: list[str], batch_size: int = 16) -> HeldOut:
    """Tokenise, batch and run the clean and zero-ablated passes of ``texts`` once."""
    from hiddenlens.hooks import capture, patch
    from hiddenlens.sae.spliced import special_positions

    lengths = [int(handle.tokenize([t])["attention_mask"].sum()) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: lengths[i])
    parts = {key: [] for key in ("batches", "special", "clean", "grads")}
    stats = []
    for j in range(0, len(order), batch_size):
        enc = handle.tokenize([texts[i] for i in order[j : j + batch_size]])
        batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        special = special_positions(enc, handle.tokenizer, True)
        with capture(handle, [hook], grads=True, stop_early=False) as cap:
            with torch.enable_grad():
                out = handle.forward(batch)
                next_token_loss(out, batch).backward()
        handle.model.zero_grad(set_to_none=True)
        with patch(handle, {hook: torch.zeros_like}):
            zero = handle.forward(batch).logits
        clean = out.logits.detach()
        stats += [(c, z) for c, z in zip(_per_row(clean, clean, batch, special),
                                         _per_row(clean, zero, batch, special))]  # fmt: skip
        for key, v in zip(parts, (batch, special, clean, cap.grads[hook].detach().clone())):
            parts[key].append(v)
    n_ce = np.array([c[1] for c, _ in stats])
    return HeldOut(
        **parts, n_ce=n_ce, n_kl=np.array([c[3] for c, _ in stats]),
        ce_clean=np.array([c[0] for c, _ in stats]) / np.maximum(n_ce, 1),
        ce_zero=np.array([z[0] for _, z in stats]) / np.maximum(n_ce, 1),
    )  # fmt: skip


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


@torch.no_grad()
def per_doc_spliced(sae, handle, hook: str, held: HeldOut, oracle: bool = False):
    """{metric: [n_docs]} of ``SPLICED`` per held-out document (means over its counted
    tokens), as :func:`hiddenlens.sae.spliced.spliced_metrics` computes them pooled.

    oracle: splice the g-SAE with :class:`GradSelected` (the clean CE gradient) instead of
    its own gradient-free ``encode``.
    """
    from hiddenlens.hooks import patch

    ce, kl = [], []
    for j, batch in enumerate(held.batches):
        model = GradSelected(sae, held.grads[j]) if oracle else sae
        keep_clean = held.special[j].unsqueeze(-1)

        def splice(a, model=model, keep_clean=keep_clean):
            return torch.where(keep_clean, a, model.reconstruct(a))

        with patch(handle, {hook: splice}):
            logits = handle.forward(batch).logits
        for c, n, k, m in _per_row(held.clean[j], logits, batch, held.special[j]):
            ce.append(c / max(n, 1))
            kl.append(k / max(m, 1))
    return {
        "ce_clean": held.ce_clean, "ce_zero": held.ce_zero,
        "ce_spliced": np.asarray(ce), "kl_spliced": np.asarray(kl),
    }  # fmt: skip


def resample_counts(n_docs: int, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot, n_docs] multiplicities of a bootstrap resample of the documents."""
    if n_docs < 2 or n_boot < 1:
        raise ValueError(
            f"a bootstrap needs >= 2 documents and >= 1 resample, got {n_docs}, {n_boot}"
        )
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
