"""Feature cards as the batch JSON that SAEDashboard writes for a Neuronpedia upload.

Neuronpedia (Lin 2023) imports SAE dashboards as *batch* files produced by SAEDashboard's
``NeuronpediaConverter`` (Bloom, Lin et al.; the ``sae-dashboard`` package, itself from
``sae_vis`` by McDougall 2024): ``{model_id, layer (int), sae_set, sae_id_suffix,
features: [...]}``, each feature ``{feature_index, frac_nonzero, freq_hist_*, pos_/neg_*,
n_prompts_total, n_tokens_in_prompt, dataset, activations: [{bin_min, bin_max,
bin_contains, tokens, values, qualifying_token_index}], ...}``.

:data:`SCHEMA` lists every field with its type exactly as the ``__init__`` signatures of
``NeuronpediaDashboardBatch`` / ``NeuronpediaDashboardFeature`` /
``NeuronpediaDashboardActivation`` in ``sae_dashboard/neuronpedia/neuronpedia_dashboard.py``
(sae-dashboard 0.8.0) declare them; :func:`validate_neuronpedia` checks a batch against it.
That format has no ``minValue`` (Neuronpedia computes it on import), so none is written.
Activation groups follow the converter: the top examples carry ``bin_min = -1``,
``bin_max`` = the latent's max activation, ``bin_contains = -1`` (its "TOP ACTIVATIONS"
group); each quantile interval carries its bounds and the fraction of the latent's nonzero
activations inside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_NUM = (int, float)
_NUMS, _INTS, _STRS = ("list", _NUM), ("list", (int,)), ("list", (str,))

#: field -> type for each object of a batch (SAEDashboard 0.8.0's dataclasses).
SCHEMA: dict[str, dict[str, Any]] = {
    "batch": {
        "model_id": (str,),
        "layer": (int,),
        "sae_set": (str,),
        "sae_id_suffix": (str, type(None)),
        "features": ("list", "feature"),
    },
    "feature": {
        "feature_index": (int,),
        "neuron_alignment_indices": _INTS,
        "neuron_alignment_values": _NUMS,
        "neuron_alignment_l1": _NUMS,
        "correlated_neurons_indices": _INTS,
        "correlated_neurons_l1": _NUMS,
        "correlated_neurons_pearson": _NUMS,
        "correlated_features_indices": _INTS,
        "correlated_features_l1": _NUMS,
        "correlated_features_pearson": _NUMS,
        "neg_str": _STRS,
        "neg_values": _NUMS,
        "pos_str": _STRS,
        "pos_values": _NUMS,
        "frac_nonzero": _NUM,
        "freq_hist_data_bar_values": _NUMS,
        "freq_hist_data_bar_heights": _NUMS,
        "logits_hist_data_bar_heights": _NUMS,
        "logits_hist_data_bar_values": _NUMS,
        "n_prompts_total": (int,),
        "n_tokens_in_prompt": (int,),
        "dataset": (str,),
        "decoder_weights_dist": _NUMS,
        "activations": ("list", "activation"),
        "vector": _NUMS,
    },
    "activation": {
        "bin_min": _NUM,
        "bin_max": _NUM,
        "bin_contains": _NUM,
        "tokens": _STRS,
        "values": _NUMS,
        "qualifying_token_index": (int,),
    },
}
#: optional activation fields (written by SAEDashboard only with direct feature attribution).
OPTIONAL = {"activation": {"dfa_values": _NUMS, "dfa_maxValue": _NUM, "dfa_targetIndex": (int,)}}


@dataclass
class NeuronpediaTarget:
    """Where a batch goes on Neuronpedia: model, integer layer, SAE set and the data used."""

    model_id: str
    layer: int
    sae_set: str
    dataset: str = ""
    n_prompts_total: int = 0
    n_tokens_in_prompt: int = 0
    sae_id_suffix: str | None = None

    def __post_init__(self):
        for name in ("model_id", "sae_set"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("layer", "n_prompts_total", "n_tokens_in_prompt"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0 (Neuronpedia's layer), got {v!r}")


def layer_of(hook: str) -> int:
    """Neuronpedia's integer layer for a hook name: its last number (0 if it has none)."""
    digits = re.findall(r"\d+", hook)
    return int(digits[-1]) if digits else 0


def _activation(ex, lo: float, hi: float, contains: float) -> dict[str, Any]:
    return {
        "bin_min": float(lo),
        "bin_max": float(hi),
        "bin_contains": float(contains),
        "tokens": [str(t) for t in ex.tokens],
        "values": [float(v) for v in ex.acts],
        "qualifying_token_index": int(ex.focus),
    }


def _feature(card, target: NeuronpediaTarget) -> dict[str, Any]:
    acts = [_activation(e, -1, card.max_act, -1) for e in card.top]
    for q in card.quantiles:
        lo, hi = q["range"]
        acts += [_activation(e, lo, hi, q.get("contains", 0.0)) for e in q["examples"]]
    edges = card.hist_edges
    out: dict[str, Any] = {k: [] for k, t in SCHEMA["feature"].items() if t[0] == "list"}
    out.update(
        feature_index=int(card.index),
        frac_nonzero=float(card.density),
        freq_hist_data_bar_heights=[float(c) for c in card.hist_counts],
        freq_hist_data_bar_values=[float((a + b) / 2) for a, b in zip(edges[:-1], edges[1:])],
        pos_str=[str(t) for t, _ in card.effects_pos],
        pos_values=[float(v) for _, v in card.effects_pos],
        neg_str=[str(t) for t, _ in card.effects_neg],
        neg_values=[float(v) for _, v in card.effects_neg],
        n_prompts_total=target.n_prompts_total,
        n_tokens_in_prompt=target.n_tokens_in_prompt,
        dataset=target.dataset,
        activations=acts,
    )
    return out


def to_neuronpedia(cards, target: NeuronpediaTarget) -> dict[str, Any]:
    """:func:`~hiddenlens.report.features.feature_cards` output as one Neuronpedia batch."""
    if not isinstance(target, NeuronpediaTarget):
        raise TypeError(f"target must be a NeuronpediaTarget, got {type(target).__name__}")
    batch = {
        "model_id": target.model_id,
        "layer": target.layer,
        "sae_set": target.sae_set,
        "sae_id_suffix": target.sae_id_suffix,
        "features": [_feature(c, target) for c in cards],
    }
    validate_neuronpedia(batch)
    return batch


def _check_value(value, kind, path: str) -> None:
    if kind[0] == "list":
        if not isinstance(value, list):
            raise ValueError(f"{path} must be a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            if isinstance(kind[1], str):
                _check_object(item, kind[1], f"{path}[{i}]")
            else:
                _check_value(item, kind[1], f"{path}[{i}]")
        return
    if isinstance(value, bool) or not isinstance(value, kind):
        names = "/".join(t.__name__ for t in kind)
        raise ValueError(f"{path} must be {names}, got {value!r}")


def _check_object(obj, name: str, path: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{path} must be a {name} object, got {type(obj).__name__}")
    fields, optional = SCHEMA[name], OPTIONAL.get(name, {})
    missing = sorted(set(fields) - set(obj))
    extra = sorted(set(obj) - set(fields) - set(optional))
    if missing or extra:
        raise ValueError(
            f"{path}: missing fields {missing}, unknown fields {extra} "
            f"(SAEDashboard's {name} has {sorted(fields)})"
        )
    for key, value in obj.items():
        _check_value(value, fields.get(key) or optional[key], f"{path}.{key}")


def validate_neuronpedia(batch: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field of ``batch`` that breaks :data:`SCHEMA`."""
    _check_object(batch, "batch", "batch")
