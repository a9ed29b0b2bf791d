"""Direct logit attribution and the logit lens for TransformerLens models.

- Direct logit attribution (Elhage et al., "A Mathematical Framework for Transformer
  Circuits", 2021): the residual stream at the final position is a sum of component outputs
  (embeddings, each attention head, each MLP); each component's contribution to a logit (or
  logit difference) is its output, centred and scaled by the final LayerNorm's cached scale,
  dotted with the unembedding direction times the LayerNorm's weight; the LayerNorm's bias is
  one more component (``ln_final_bias``). The components then sum, with the unembedding
  bias, to the logit (difference) for any final norm; on a model loaded with ``fold_ln``
  they equal TransformerLens's ``ActivationCache.logit_attrs``. Uses TransformerLens'
  ``ActivationCache.decompose_resid`` and ``stack_head_results``.
- Logit lens (nostalgebraist, 2020): every layer's residual stream through the final norm and
  the unembedding; the rank of a token per layer shows where the prediction forms ("early
  excitation" in VISTA).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["DirectLogitAttribution", "LogitLens", "direct_logit_attribution", "logit_lens"]


def _check_tl(model, instead: str) -> None:
    """TypeError unless model is a HookedTransformer; ``instead`` names what to use otherwise."""
    try:
        from transformer_lens import HookedTransformer
    except ImportError as err:  # pragma: no cover - transformer-lens is a core dependency
        raise ImportError("direct logit attribution and the logit lens need transformer-lens") from err
    if not isinstance(model, HookedTransformer):
        raise TypeError(
            f"{type(model).__name__} is not a TransformerLens HookedTransformer; {instead}"
        )


def _token_index(tokens: Tensor, ids, vocab: int, name: str, device=None) -> Tensor:
    """ids as [batch] long on ``device`` (the model's: gather needs the logits' device)."""
    idx = torch.as_tensor(ids, dtype=torch.long).reshape(-1)
    if idx.numel() == 1:
        idx = idx.expand(tokens.shape[0])
    if idx.numel() != tokens.shape[0]:
        raise ValueError(f"{name} has {idx.numel()} ids for a batch of {tokens.shape[0]}")
    bad = idx[(idx < 0) | (idx >= vocab)]
    if bad.numel():
        raise ValueError(f"{name} id {int(bad[0])} is out of range for a vocabulary of {vocab}")
    return idx.to(device) if device is not None else idx


@dataclass
class DirectLogitAttribution:
    """Mean over the batch of each component's direct contribution to the logit (difference).

    components: {label: value} for embed, pos_embed, per-layer attn_out / mlp_out, and
    ``ln_final_bias`` (the final LayerNorm's bias; 0 without one); heads: [n_layers, n_heads];
    per_layer: [n_layers] (attention + MLP); logit: the model's mean logit (difference), which
    ``total`` (sum of components + unembedding bias) reproduces. ``head_grid()`` /
    ``rest()`` split the total into a layers x (heads, b_O, MLP) grid and the other terms
    (``hiddenlens.viz.attribution.plot_head_dla`` draws them).
    """

    components: dict[str, float]
    heads: np.ndarray
    per_layer: np.ndarray
    total: float
    logit: float

    @property
    def n_layers(self) -> int:
        return int(self.heads.shape[0])

    def layer_component(self, kind: str) -> np.ndarray:
        """[n_layers] contribution of each layer's ``attn_out`` or ``mlp_out`` (0 if absent)."""
        if kind not in ("attn_out", "mlp_out"):
            raise ValueError(f"kind must be 'attn_out' or 'mlp_out', got {kind!r}")
        return np.array([self.components.get(f"{i}_{kind}", 0.0) for i in range(self.n_layers)])

    def head_grid(self) -> tuple[np.ndarray, list[str]]:
        """([n_layers, n_heads + 2] grid, column labels): each head, then the attention output
        bias b_O (attn_out minus the sum of its heads), then the MLP, per layer."""
        attn_bias = self.layer_component("attn_out") - self.heads.sum(1)
        grid = np.column_stack([self.heads, attn_bias, self.layer_component("mlp_out")])
        return grid, [f"H{h}" for h in range(self.heads.shape[1])] + ["b_O", "MLP"]

    def rest(self) -> dict[str, float]:
        """Every term outside ``head_grid``: embeddings, the final norm's bias and the
        unembedding bias, so ``head_grid()[0].sum() + sum(rest().values()) == total``."""
        per_layer = {f"{i}_{k}" for i in range(self.n_layers) for k in ("attn_out", "mlp_out")}
        out = {k: v for k, v in self.components.items() if k not in per_layer}
        out["unembed_bias"] = self.total - sum(self.components.values())
        return out

    def top(self, k: int = 5) -> list[tuple[str, float]]:
        """The k heads with the largest absolute contribution, as ("L{layer}H{head}", value)."""
        flat = np.argsort(-np.abs(self.heads).ravel())[:k]
        n_heads = self.heads.shape[1]
        return [(f"L{i // n_heads}H{i % n_heads}", float(self.heads.ravel()[i])) for i in flat]


def direct_logit_attribution(
    model, tokens: Tensor, answer, *, counterfactual=None, position: int = -1
) -> DirectLogitAttribution:
    """DLA of logit[answer] (minus logit[counterfactual]) at ``position``. tokens: [batch, seq]."""
    _check_tl(model, "for other models use layer_gradient_x_activation or activation_patching")
    vocab = model.cfg.d_vocab_out
    ans = _token_index(tokens, answer, vocab, "answer", model.W_U.device)
    direction = model.W_U[:, ans].T.detach()  # [batch, d_model]
    bias = model.b_U[ans].detach()
    if counterfactual is not None:
        cf = _token_index(tokens, counterfactual, vocab, "counterfactual", model.W_U.device)
        direction = direction - model.W_U[:, cf].T.detach()
        bias = bias - model.b_U[cf].detach()
    weight, ln_bias = _final_norm_affine(model)
    with torch.no_grad():
        logits, cache = model.run_with_cache(tokens)
        comps, labels = cache.decompose_resid(
            layer=-1, pos_slice=position, apply_ln=True, return_labels=True
        )
        heads = cache.stack_head_results(layer=-1, pos_slice=position, apply_ln=True)
        # the norm's weight acts on the unembedding side; its bias is one more component
        ln_direction = direction * weight if weight is not None else direction
        contrib = (comps * ln_direction[None]).sum(-1).mean(1)  # [n_components]
        head_contrib = (heads * ln_direction[None]).sum(-1).mean(1)
        bias_contrib = (direction @ ln_bias).mean() if ln_bias is not None else torch.zeros(())
        chosen = logits[:, position].gather(1, ans[:, None])[:, 0]
        if counterfactual is not None:
            chosen = chosen - logits[:, position].gather(1, cf[:, None])[:, 0]
    components = {lab: float(v) for lab, v in zip(labels, contrib)}
    components["ln_final_bias"] = float(bias_contrib)
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    per_layer = np.array(
        [
            components.get(f"{i}_attn_out", 0.0) + components.get(f"{i}_mlp_out", 0.0)
            for i in range(n_layers)
        ]
    )
    return DirectLogitAttribution(
        components=components,
        heads=head_contrib.reshape(n_layers, n_heads).cpu().numpy().astype(np.float64),
        per_layer=per_layer,
        total=float(contrib.sum() + bias_contrib + bias.mean()),
        logit=float(chosen.mean()),
    )


def _final_norm_affine(model) -> tuple[Tensor | None, Tensor | None]:
    """(weight [d_model], bias [d_model]) of ``ln_final``; None where it has none (LNPre,
    RMSPre, no norm, or weights folded into the unembedding)."""
    ln = getattr(model, "ln_final", None)
    w, b = getattr(ln, "w", None), getattr(ln, "b", None)
    return (
        None if w is None else w.detach(),
        None if b is None else b.detach(),
    )


@dataclass
class LogitLens:
    """ranks / probs: [n_layers + 1, batch] of the tracked token at each residual stage.

    labels name the stages ("0_pre" ... "final_post"); rank 0 = the top prediction.
    """

    ranks: np.ndarray
    probs: np.ndarray
    labels: list[str]

    def first_top1_layer(self) -> np.ndarray:
        """[batch] first stage whose top prediction is the token (-1 if never)."""
        hit = self.ranks == 0
        return np.where(hit.any(0), hit.argmax(0), -1)


def logit_lens(model, tokens: Tensor, token_ids, *, position: int = -1) -> LogitLens:
    """Rank and probability of ``token_ids`` when each layer's residual is decoded through the
    final norm and the unembedding. tokens: [batch, seq]; token_ids: one id or one per example."""
    # a Hugging Face causal LM has the same lens through its own final norm and unembedding
    _check_tl(model, "for a Hugging Face causal LM (or its path) TunedLens(model, n_steps=0) is "
              "the logit lens (its .evaluate scores it on stored activations)")
    ids = _token_index(tokens, token_ids, model.cfg.d_vocab_out, "token_ids", model.W_U.device)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
        acc, labels = cache.accumulated_resid(layer=None, pos_slice=position, return_labels=True)
        # [stages, batch, d]: the final norm is recomputed on each stage (its own scale)
        logits = (
            model.unembed(model.ln_final(acc)) if hasattr(model, "ln_final") else model.unembed(acc)
        )
        own = logits.gather(2, ids.view(1, -1, 1).expand(logits.shape[0], -1, 1))  # [S, B, 1]
        ranks = (logits > own).sum(-1)
        probs = logits.softmax(-1).gather(2, ids.view(1, -1, 1).expand(logits.shape[0], -1, 1))[
            ..., 0
        ]
    return LogitLens(ranks.cpu().numpy(), probs.cpu().numpy().astype(np.float64), list(labels))
