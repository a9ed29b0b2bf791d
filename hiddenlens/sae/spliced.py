"""Spliced evaluation: run the model with the SAE reconstruction patched in.

Compares three forward passes per batch: clean, reconstruction spliced in at the hook
point, and the activation zero-ablated (the reference for "loss recovered"; Bricken et
al. 2023, Gao et al. 2024). Language models (outputs with logits): CE loss of each pass,
CE-loss score and KL(p_clean || p). Sentence encoders (MiniLM): cosine between the spliced
(or zero-ablated) and clean mean-pooled, normalised sentence embeddings.

Conventions (:class:`SpliceConventions`), SAELens's by default (``sae_lens.evals``
``get_recons_loss`` / ``get_downstream_reconstruction_metrics``): special tokens (BOS, EOS,
PAD, ...) keep their clean activation, because an SAE trained on a store that dropped them
never saw them, and their positions are left out of the CE and KL averages; the zero
ablation replaces every position; CE is next-token loss at every kept position that has a
real next token; KL(p_clean || p) is taken at every kept position, the last one included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

_KL_POSITIONS = ("all", "next_token")


@dataclass
class SpliceConventions:
    """Where the reconstruction is spliced and which positions CE / KL average over.

    Fields:
        exclude_special_tokens: True: special tokens (the batch's ``special_tokens_mask``
            from hiddenlens tokenisation, else the tokenizer's BOS/EOS/PAD/SEP/CLS ids) are
            left unspliced and uncounted (SAELens's ``exclude_special_tokens=True``); a
            list of token ids: those; False: splice and count every real token; None:
            follow the store (True when it dropped special tokens, hiddenlens's default
            when caching; True when there is no store).
        kl_positions: "all" (SAELens: KL at every kept position, the last included) or
            "next_token" (only where CE is defined, i.e. not the last real position).
    """

    exclude_special_tokens: bool | Sequence[int] | None = None
    kl_positions: str = "all"

    def __post_init__(self) -> None:
        e = self.exclude_special_tokens
        ok = e is None or isinstance(e, bool)
        if not ok and isinstance(e, Sequence) and not isinstance(e, str):
            ok = all(isinstance(i, int) and not isinstance(i, bool) for i in e)
        if not ok:
            raise ValueError(
                f"exclude_special_tokens must be True, False, None or a list of token ids, got {e!r}"
            )
        if self.kl_positions not in _KL_POSITIONS:
            raise ValueError(
                f"kl_positions must be one of {_KL_POSITIONS}, got {self.kl_positions!r}"
            )

    def resolved(self, store=None) -> SpliceConventions:
        """A copy with ``exclude_special_tokens=None`` replaced by what the store did."""
        if self.exclude_special_tokens is not None:
            return self
        tok = ((getattr(store, "manifest", None) or {}).get("run") or {}).get("settings") or {}
        drop = (tok.get("tokenizer") or {}).get("drop_special_tokens", True)
        return SpliceConventions(bool(drop), self.kl_positions)


_SPECIAL_ATTRS = ("bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "cls_token_id")


def special_positions(batch: dict, tokenizer, exclude) -> torch.Tensor:
    """Bool [b, s]: positions left unspliced and uncounted under ``exclude``."""
    ids = batch["input_ids"]
    if exclude is False:
        return torch.zeros_like(ids, dtype=torch.bool)
    if exclude is True and "special_tokens_mask" in batch:
        return batch["special_tokens_mask"].bool()
    if exclude is True:
        found = {getattr(tokenizer, a, None) for a in _SPECIAL_ATTRS} if tokenizer else set()
        exclude = sorted(i for i in found if i is not None)
    if not exclude:
        return torch.zeros_like(ids, dtype=torch.bool)
    return torch.isin(ids, torch.as_tensor(list(exclude), dtype=ids.dtype))


def kl_and_ce(clean_logits, logits, input_ids, keep, real, kl_positions: str = "all"):
    """(summed next-token CE, its count, summed KL(p_clean || p), its count) of ``logits``.

    logits [b, s, vocab]; keep: bool [b, s], the counted positions (real and not excluded);
    real: bool [b, s], the real (non-padding) tokens. CE at position t predicts token t+1
    and needs keep[t] and a real token t+1; KL is taken at every kept position ("all") or
    only where CE is defined ("next_token").
    """
    dev = logits.device  # token ids and masks come from the CPU data pipeline
    input_ids, keep, real = input_ids.to(dev), keep.to(dev), real.to(dev)
    clean_logits = clean_logits.to(dev)
    lp = F.log_softmax(logits.double(), -1)
    lq = F.log_softmax(clean_logits.double(), -1)
    m_ce = keep[:, :-1] & real[:, 1:]
    ce = -lp[:, :-1].gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    kl = (lq.exp() * (lq - lp)).sum(-1)
    m_kl = keep if kl_positions == "all" else keep & F.pad(real[:, 1:], (0, 1), value=False)
    return float(ce[m_ce].sum()), int(m_ce.sum()), float(kl[m_kl].sum()), int(m_kl.sum())


def _logits(out):
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, torch.Tensor) and out.dim() == 3:
        return out
    return None


def _batches(handle, data, batch_size: int):
    """Model inputs of ``data`` (anything :func:`hiddenlens.data.as_data` reads) in batches."""
    from hiddenlens.data import as_data
    from hiddenlens.hooks.rows import RowSettings, batch_model_input

    source, settings, warned = as_data(data), RowSettings(), [False]
    settings.mode_for(handle, source)  # refuses text for a model without a tokenizer
    for batch in source.batches(batch_size):
        model_input, keep, ids = batch_model_input(handle, batch, source.kind, settings, warned)
        if source.kind == "tokens" and not isinstance(model_input, dict):
            # the CE / KL positions come from the mask: keep ids and mask together
            model_input = {"input_ids": ids, "attention_mask": keep.long()}
        yield model_input


def _keep_special(a: torch.Tensor, recon: torch.Tensor, unspliced: torch.Tensor, hook: str):
    """``recon`` with the ``unspliced`` [b, s] positions keeping the clean activation ``a``."""
    if not bool(unspliced.any()):
        return recon
    if a.dim() < 2 or tuple(a.shape[:2]) != tuple(unspliced.shape):
        raise ValueError(
            f"activation at {hook!r} has shape {tuple(a.shape)}; cannot leave the special "
            f"token positions {tuple(unspliced.shape)} unspliced (pass "
            "SpliceConventions(exclude_special_tokens=False))"
        )
    keep = unspliced.to(a.device).reshape(*unspliced.shape, *([1] * (a.dim() - 2)))
    return torch.where(keep, a, recon)


def _three_runs(handle, hook: str, sae, batch, unspliced: torch.Tensor | None):
    """Clean, spliced (``unspliced`` [b, s] positions keep the clean activation) and
    zero-ablated (every position) forward passes."""
    from hiddenlens.hooks import patch

    def splice(a: torch.Tensor) -> torch.Tensor:
        recon = sae.reconstruct(a)
        return recon if unspliced is None else _keep_special(a, recon, unspliced, hook)

    out_hook = getattr(sae.cfg, "output_hook", None)
    if getattr(type(sae), "pair_role", None) == "target" and out_hook:
        # a transcoder replaces the component: its output from the input seen in this pass
        seen: list[torch.Tensor] = []

        def record(a: torch.Tensor) -> torch.Tensor:
            seen.append(a)
            return a

        def replace(a: torch.Tensor) -> torch.Tensor:
            recon = sae.reconstruct(seen.pop())
            return recon if unspliced is None else _keep_special(a, recon, unspliced, out_hook)

        splices, ablated = {hook: record, out_hook: replace}, out_hook
    else:
        splices, ablated = {hook: splice}, hook
    clean = handle.forward(batch)
    with patch(handle, splices):
        spliced = handle.forward(batch)
    with patch(handle, {ablated: torch.zeros_like}):
        zero = handle.forward(batch)
    return clean, spliced, zero


@torch.no_grad()
def spliced_metrics(
    sae,
    model,
    hook: str,
    data,
    *,
    downstream: Callable | None = None,
    batch_size: int = 16,
    conventions: SpliceConventions | None = None,
) -> dict[str, float]:
    """Downstream metrics with the reconstruction spliced in (keys without hook suffix).

    data: anything :func:`hiddenlens.data.as_data` reads (texts, token ids or a
        ``{"input_ids", "attention_mask"}`` mapping, example tensors, a dataset, a
        DataSource), evaluated ``batch_size`` examples at a time.
    conventions: where to splice and what CE / KL average over (default: SAELens's).
    """
    from hiddenlens.hooks import ModelHandle, load_model

    handle = model if isinstance(model, ModelHandle) else load_model(model)
    conv = (conventions or SpliceConventions()).resolved()
    sums: dict[str, float] = {}

    def add(key, value):
        sums[key] = sums.get(key, 0.0) + value

    mode = None
    for batch in _batches(handle, data, batch_size):
        special = None
        if isinstance(batch, dict) and "input_ids" in batch:
            special = special_positions(batch, handle.tokenizer, conv.exclude_special_tokens)
        clean, spliced, zero = _three_runs(handle, hook, sae, batch, special)
        if downstream is not None:
            mode = "custom"
            for name, o in (("clean", clean), ("spliced", spliced), ("zero", zero)):
                add(f"downstream_{name}", float(downstream(o, batch)))
            add("n_batches", 1.0)
        elif _logits(clean) is not None and isinstance(batch, dict):
            mode = "lm"
            ids = batch["input_ids"]
            real = batch.get("attention_mask", torch.ones_like(ids)).bool()
            keep, lc, kp = real & ~special, _logits(clean), conv.kl_positions
            ce_c, n_ce, _, _ = kl_and_ce(lc, lc, ids, keep, real, kp)
            ce_s, _, kl_s, n_kl = kl_and_ce(lc, _logits(spliced), ids, keep, real, kp)
            ce_z, _, kl_z, _ = kl_and_ce(lc, _logits(zero), ids, keep, real, kp)
            for k, v in (
                ("ce_clean", ce_c),
                ("ce_spliced", ce_s),
                ("ce_zero", ce_z),
                ("n_ce", n_ce),
                ("kl_spliced", kl_s),
                ("kl_zero", kl_z),
                ("n_kl", n_kl),
            ):
                add(k, v)
        else:
            if handle.kind != "hf-encoder" or not isinstance(batch, dict):
                raise ValueError(
                    f"spliced metrics need a model with an LM head (CE-loss score) or a Hugging "
                    f"Face sentence encoder (embedding cosine); {handle.model_id!r} is a "
                    f"{handle.kind!r} model: pass downstream=fn(outputs, batch) -> loss"
                )
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
        n_ce, n_kl = max(s.pop("n_ce"), 1), max(s.pop("n_kl"), 1)
        out = {k: v / (n_kl if k.startswith("kl_") else n_ce) for k, v in s.items()}
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
