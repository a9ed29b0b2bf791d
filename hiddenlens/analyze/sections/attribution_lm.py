"""Attribution parts for language models, run by :mod:`hiddenlens.analyze.sections.attribution`.

- Per-head direct logit attribution (Elhage et al., "A Mathematical Framework for Transformer
  Circuits", 2021) for a TransformerLens model: at each example's last real (non-special)
  token, answer = the model's top-1 next token, counterfactual = its runner-up; the logit
  difference is split over the embeddings, every head, each layer's b_O and MLP and the
  final-norm / unembedding biases (:func:`hiddenlens.attribution.lens.direct_logit_attribution`),
  and the split is checked for completeness (the terms sum to the logit difference). A Hugging
  Face causal LM has no per-head hook points (its heads are concatenated before the output
  projection), so the section says DLA needs a ``tl:`` model instead of approximating it.
- Back-patching (Biran et al., "Hopping Too Late", 2024): queries are prefixes of the texts;
  a query is answered correctly when the model's top-1 at its last position is the actual
  next token; every (source j, target i < j) pair of the cached residual hooks injects layer
  j's last-position state at layer i (:func:`hiddenlens.attribution.back_patching_sweep`) and
  records which failed queries it fixes. Costs about n_hooks^2 / 2 forward passes per prefix
  length, so queries and hooks are bounded by the section's config.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hiddenlens._keys import metric_key

MIN_PREFIX = 2  # tokens a back-patching query holds at least (with a BOS, one real word)


@dataclass
class TokenSeq:
    """One example without padding: ids [L] and which positions are words (not special)."""

    ids: Tensor
    word: Tensor


def lm_sequences(handle, texts: list[str] | None, batch: dict | None, seq_len: int) -> list[TokenSeq]:
    """The examples' real tokens: tokenised ``texts`` (special tokens kept, since the model
    sees them, but marked) or the rows of a token-id ``batch`` (padding dropped)."""
    if texts is not None:
        batch = handle.tokenize(list(texts), seq_len=seq_len)
    ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    special = batch.get("special_tokens_mask")
    out = []
    for r in range(ids.shape[0]):
        keep = mask[r]
        word = ~special[r].bool() if special is not None else torch.ones_like(keep)
        out.append(TokenSeq(ids[r][keep].long(), word[keep]))
    return [s for s in out if len(s.ids)]


def _logits(handle, ids: Tensor) -> Tensor:
    """[batch, seq, vocab] next-token logits of unpadded ids [batch, seq]."""
    from hiddenlens.attribution._core import first_tensor

    with torch.no_grad():
        out = handle.forward({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    return first_tensor(out).float()


def top_two(handle, seq: TokenSeq) -> tuple[Tensor, int, int] | None:
    """(prefix [L'], top-1, runner-up) at ``seq``'s last word; None if it holds no word."""
    words = torch.nonzero(seq.word).ravel()
    if not len(words):
        return None
    prefix = seq.ids[: int(words[-1]) + 1]
    last = _logits(handle, prefix[None])[0, -1]
    top = torch.topk(last, 2).indices
    return prefix, int(top[0]), int(top[1])


def _mean_dla(results: list):
    """The mean of per-example DLA results (every field is a batch mean, so this is exact)."""
    from hiddenlens.attribution.lens import DirectLogitAttribution

    keys = list(results[0].components)
    return DirectLogitAttribution(
        components={k: float(np.mean([r.components[k] for r in results])) for k in keys},
        heads=np.mean([r.heads for r in results], axis=0),
        per_layer=np.mean([r.per_layer for r in results], axis=0),
        total=float(np.mean([r.total for r in results])),
        logit=float(np.mean([r.logit for r in results])),
    )


def head_dla(handle, seqs: list[TokenSeq]):
    """(mean DLA of logit[top-1] - logit[runner-up] at each example's last word, the
    [(prefix, answer, counterfactual)] it was computed on)."""
    from hiddenlens.attribution.lens import direct_logit_attribution

    picked = [p for p in (top_two(handle, s) for s in seqs) if p is not None]
    if not picked:
        return None, []
    device = handle.device
    results = [direct_logit_attribution(handle.model, prefix[None].to(device), a, counterfactual=c)
               for prefix, a, c in picked]
    return _mean_dla(results), picked


def _dla_table(dla, k: int) -> list[dict]:
    scale = dla.logit if dla.logit else float("nan")
    return [{"head": name, "mean contribution": round(v, 4), "share of the logit diff": round(v / scale, 3)}
            for name, v in dla.top(k)]


def run_dla(ctx, cfg, sec, seqs: list[TokenSeq]) -> tuple[dict[str, float], str]:
    """The DLA figure, top-heads table and ``attribution/dla_*`` metrics; and a note."""
    from hiddenlens.viz.attribution import plot_head_dla

    handle = ctx.handle
    if handle.kind != "transformerlens":
        return {}, ("Per-head DLA not run: it needs each head's output at the final position, "
                    "which a HookedTransformer exposes (load the model with a `tl:` spec); this "
                    f"{handle.kind} model concatenates its heads before the output projection.")
    dla, picked = head_dla(handle, seqs)
    if dla is None:
        return {}, "Per-head DLA not run: no example has a non-special token."
    err = abs(dla.total - dla.logit)
    tok = handle.tokenizer
    name = (lambda i: tok.convert_ids_to_tokens(i)) if tok is not None else str  # noqa: E731
    sec.add_figure(plot_head_dla(dla), "dla_heads",
                   caption=f"direct logit attribution of logit[top-1] - logit[runner-up] at the last "
                   f"word of {len(picked)} examples (mean); terms outside the grid under the axes")
    sec.add_table(_dla_table(dla, cfg.dla_top), caption="heads with the largest |direct contribution|")
    pairs = ", ".join(f"{name(a)!s} over {name(c)!s}" for _, a, c in picked[:4])
    note = (f"Per-head DLA at each example's last word, answer = the model's top-1 next token, "
            f"counterfactual = its runner-up ({pairs}); the terms sum to {dla.total:.4f} against "
            f"a logit difference of {dla.logit:.4f} (|error| {err:.2g}).")
    out = {"dla_logit_diff": dla.logit, "dla_total": dla.total, "dla_completeness_abs_error": err,
           "dla_heads_sum": float(dla.heads.sum()), "dla_top_head": dla.top(1)[0][1]}
    metrics = {metric_key("attribution", k): float(v) for k, v in out.items()}
    for i, v in enumerate(dla.per_layer):
        metrics[metric_key("attribution", "dla_layer", f"blocks.{i}")] = float(v)
    return metrics, note


def prefix_queries(seqs: list[TokenSeq], n: int, seed: int) -> list[tuple[Tensor, int]]:
    """Up to ``n`` (prefix ids [L], actual next token) pairs, drawn without replacement from
    every prefix of at least :data:`MIN_PREFIX` tokens whose next token is a word."""
    cands = [(s, L) for s in range(len(seqs)) for L in range(MIN_PREFIX, len(seqs[s].ids))
             if bool(seqs[s].word[L])]
    if not cands:
        return []
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(cands), size=min(n, len(cands)), replace=False))
    return [(seqs[cands[c][0]].ids[: cands[c][1]], int(seqs[cands[c][0]].ids[cands[c][1]]))
            for c in pick]


def forward_order(handle, hooks: list[str]) -> list[str]:
    """``hooks`` in the order the model defines its modules / hook points (forward order for
    a TransformerLens model and the usual HF stacks), a module's ``:input`` before its output;
    natural name order would put ``hook_resid_post`` before ``hook_resid_pre``."""
    from hiddenlens.hooks import hook_points, parse_hook_spec

    index = {name: i for i, name in enumerate(hook_points(handle))}

    def key(h: str) -> tuple[int, int]:
        spec = parse_hook_spec(h)
        return index.get(spec.module_path, len(index)), 0 if spec.slot == "input" else 1

    return sorted(hooks, key=key)


def residual_hooks(handle, hooks: list[str], probe: Tensor, limit: int) -> list[str]:
    """The hooks whose activation is [batch, seq, d_model] (the residual stream), in forward
    order, at most ``limit`` of them evenly spaced (the first and last kept)."""
    from hiddenlens.attribution.layer import capture_activations

    hooks = forward_order(handle, hooks)
    batch = {"input_ids": probe[None], "attention_mask": torch.ones_like(probe)[None]}
    acts = capture_activations(handle, batch, hooks)
    w_u = handle.unembedding()
    # the unembedding's input width; without one, the width of the last hook
    d_model = w_u.shape[0] if w_u is not None else acts[hooks[-1]].shape[-1]
    same = [h for h in hooks if acts[h].ndim == 3 and acts[h].shape[1:] == (len(probe), d_model)]
    if len(same) > limit:
        same = [same[i] for i in sorted(set(np.linspace(0, len(same) - 1, limit).round().astype(int)))]
    return same


def sweep_queries(handle, queries: list[tuple[Tensor, int]], hooks: list[str]):
    """One :class:`BackPatchingSweep` over all queries, in their order: one sweep per prefix
    length (equal lengths need no padding, so position -1 is every query's last token)."""
    from hiddenlens.attribution import back_patching_sweep
    from hiddenlens.attribution._core import first_tensor
    from hiddenlens.attribution.patching import BackPatchingSweep

    lengths = np.array([len(p) for p, _ in queries])
    correct = np.zeros((len(hooks), len(hooks), len(queries)), bool)
    base = np.zeros(len(queries), bool)
    for length in np.unique(lengths):
        at = np.flatnonzero(lengths == length)
        ids = torch.stack([queries[q][0] for q in at])
        answers = torch.tensor([queries[q][1] for q in at])

        def judge(out, answers=answers) -> Tensor:
            return first_tensor(out)[:, -1].argmax(-1).cpu() == answers

        s = back_patching_sweep(handle, {"input_ids": ids, "attention_mask": torch.ones_like(ids)},
                                hooks, judge)
        correct[:, :, at], base[at] = s.correct, s.baseline
    return BackPatchingSweep(correct, base, s.hook_points, -1)


def run_back_patching(ctx, cfg, sec, seqs: list[TokenSeq], hooks: list[str]) -> tuple[dict[str, float], str]:
    """The back-patching figure and ``attribution/back_patching_*`` metrics; and a note."""
    from hiddenlens.viz.attribution import plot_back_patching

    queries = prefix_queries(seqs, cfg.back_patching_queries, ctx.seed + 23)
    if not queries:
        return {}, "Back-patching not run: no text has a prefix followed by a word."
    hooks = residual_hooks(ctx.handle, hooks, queries[0][0], cfg.back_patching_hooks)
    if len(hooks) < 2:
        return {}, ("Back-patching not run: it needs at least two cached hooks with the residual "
                    f"stream's shape [batch, seq, d_model]; found {hooks}.")
    sweep = sweep_queries(ctx.handle, queries, hooks)
    src, dst, best = sweep.best()
    sec.add_figure(plot_back_patching(sweep), "back_patching",
                   caption="share of the failed queries (top-1 is not the actual next token) that "
                   "injecting layer j's last-position state at layer i < j fixes")
    n_len = len({len(p) for p, _ in queries})
    note = (f"Back-patching: {len(queries)} prefixes ({n_len} lengths) over {len(hooks)} hooks "
            f"({', '.join(hooks)}); the model's top-1 is the actual next token on "
            f"{sweep.baseline.mean():.0%} of them")
    if sweep.failed.any() and not sweep.fixed_by_any() > 0:
        note += f"; no back-patch fixes any of the {int(sweep.failed.sum())} failures."
    elif sweep.failed.any():
        note += (f"; {sweep.fixed_by_any():.0%} of the {int(sweep.failed.sum())} failures are fixed "
                 f"by some back-patch, the most ({best:.0%}) by {src} -> {dst}.")
    else:
        note += "; none failed, so there is nothing to fix."
    metrics = sweep.to_metrics()
    metrics[metric_key("attribution", "back_patching_n_queries")] = float(len(queries))
    return metrics, note


def run_lm(ctx, cfg, sec, texts: list[str] | None, hooks: list[str]) -> tuple[dict, list[str]]:
    """Per-head DLA (on ``cfg.examples`` examples) and back-patching (on prefixes of up to
    ``cfg.back_patching_queries`` examples) for a language model on ``texts`` (or, for
    token-id data, the first sequences): (metrics, notes)."""
    from hiddenlens.analyze.sections.sae import token_batch

    n = max(cfg.examples, cfg.back_patching_queries)
    batch = token_batch(ctx, n) if texts is None else None
    seqs = lm_sequences(ctx.handle, None if texts is None else texts[:n], batch, cfg.seq_len)
    metrics, note = run_dla(ctx, cfg, sec, seqs[: cfg.examples])
    notes = [note]
    if cfg.back_patching_queries:
        m, note = run_back_patching(ctx, cfg, sec, seqs[: cfg.back_patching_queries], hooks)
        metrics |= m
        notes.append(note)
    return metrics, notes
