"""Per-token attributions for text models, taken at the embedding output.

Token ids are not differentiable, so gradient methods attribute to the output of the
embedding layer (hook point ``"embeddings"`` for BERT-style encoders such as MiniLM,
``"hook_embed"`` for TransformerLens) and sum over the hidden dimension to get one score per
token — the usual practice for integrated gradients on text (Sundararajan et al. 2017;
Captum's ``LayerIntegratedGradients`` on the embedding layer).

Targets for sentence encoders: the cosine similarity of the mean-pooled, normalised sentence
embedding with a reference embedding, or one coordinate of that embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hiddenlens.attribution._core import first_tensor, repeat_inputs
from hiddenlens.attribution.layer import layer_gradient_x_activation, layer_integrated_gradients

__all__ = ["TokenAttribution", "token_attributions", "similarity_target", "embedding_dim_target"]

_MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass
class TokenAttribution:
    """tokens[i] and scores[i] for text i (padding dropped); delta/target_values: [n_texts]."""

    tokens: list[list[str]]
    scores: list[np.ndarray]
    delta: np.ndarray | None
    target_values: np.ndarray
    hook_point: str
    method: str

    def top(self, i: int, k: int = 5) -> list[tuple[str, float]]:
        """The k tokens of text i with the largest absolute score."""
        order = np.argsort(-np.abs(self.scores[i]))[:k]
        return [(self.tokens[i][j], float(self.scores[i][j])) for j in order]


def _pooled(output: Any, mask: Tensor) -> Tensor:
    from hiddenlens.hooks import pool_embeddings

    return pool_embeddings(output, mask)


def similarity_target(reference: Tensor) -> Callable[[Any, dict], Tensor]:
    """Target: cosine similarity of each sentence embedding with ``reference`` [d]."""
    ref = torch.nn.functional.normalize(reference.detach().reshape(-1).float(), dim=0)
    return lambda out, batch: _pooled(out, batch["attention_mask"]) @ ref.to(first_tensor(out))


def embedding_dim_target(dim: int) -> Callable[[Any, dict], Tensor]:
    """Target: coordinate ``dim`` of the normalised sentence embedding."""
    return lambda out, batch: _pooled(out, batch["attention_mask"])[:, dim]


def _pad_baseline(handle, enc: dict, batch: dict) -> dict:
    """The batch with every non-special token replaced by the padding token."""
    pad = handle.tokenizer.pad_token_id
    special = enc.get("special_tokens_mask")
    if pad is None or special is None:
        raise ValueError("baseline='pad' needs a tokenizer with a pad token; use 'zeros'")
    return dict(batch, input_ids=torch.where(special.bool(), batch["input_ids"], pad))


def _check(handle, texts, method: str, baseline: str) -> None:
    if baseline not in ("pad", "zeros"):
        raise ValueError(f"baseline={baseline!r}; accepted: 'pad', 'zeros'")
    if not getattr(handle, "is_text", False):
        raise TypeError(
            "token_attributions needs a ModelHandle with a tokenizer (load_model('minilm'))"
        )
    if not texts:
        raise ValueError("texts is empty")
    if method not in ("integrated_gradients", "grad_x_act"):
        raise ValueError(f"method={method!r}; accepted: 'integrated_gradients', 'grad_x_act'")


def token_attributions(
    handle,
    texts: list[str],
    target: Callable[[Any, dict], Tensor],
    *,
    hook_point: str = "embeddings",
    method: str = "integrated_gradients",
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    seq_len: int | None = None,
    baseline: str = "pad",
) -> TokenAttribution:
    """Attribute ``target(output, batch) -> [batch]`` to the tokens of ``texts``.

    handle: a ModelHandle for a text model. method: "integrated_gradients" (``delta`` is the
    completeness error) or "grad_x_act". baseline (IG): "pad" — the activation of the same
    sequence with every non-special token replaced by the padding token (special tokens and
    positions kept, as in Captum's BERT tutorial) — or "zeros" (zero activation; a poor path for
    encoders that LayerNorm their embeddings, which are scale invariant near zero).
    """
    _check(handle, texts, method, baseline)
    enc = handle.tokenize(list(texts), seq_len=seq_len)
    batch = {k: v for k, v in enc.items() if k in _MODEL_KEYS}
    n = len(texts)

    def tgt(out: Any) -> Tensor:
        reps = first_tensor(out).shape[0] // n  # IG repeats the batch step-major
        return target(out, repeat_inputs(batch, reps))

    if method == "integrated_gradients":
        res = layer_integrated_gradients(
            handle,
            batch,
            hook_point,
            target=tgt,
            n_steps=n_steps,
            baseline_inputs=_pad_baseline(handle, enc, batch) if baseline == "pad" else None,
            internal_batch_size=internal_batch_size,
        )
    else:
        res = next(
            iter(layer_gradient_x_activation(handle, batch, hook_point, target=tgt).values())
        )
    per_token = res.attributions.sum(-1)  # [n, seq]
    mask = batch["attention_mask"].bool()
    tokens = [
        handle.tokenizer.convert_ids_to_tokens(batch["input_ids"][i][mask[i]].tolist())
        for i in range(n)
    ]
    scores = [per_token[i][mask[i]].detach().cpu().numpy() for i in range(n)]
    delta = None if res.delta is None else res.delta.detach().cpu().numpy()
    values = res.target_values.detach().cpu().numpy()
    return TokenAttribution(tokens, scores, delta, values, res.info["hook_point"], method)
