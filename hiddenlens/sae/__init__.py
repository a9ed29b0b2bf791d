"""Sparse autoencoders on cached activations: architectures, training, evaluation, formats.

Architectures (one module each in ``hiddenlens.sae.architectures``, listed by
``architecture_names()``): relu, topk, batchtopk, jumprelu, gated, gradient_topk; add your own
with ``register_architecture`` (``hiddenlens.sae.registry``). ``train`` fits one on a store's hook point, ``evaluate``
measures it, ``load`` reads hiddenlens / SAELens / sparsify directories, ``top_activating``
and ``direct_effect`` inspect latents, ``SupervisedDictionary`` and
``hiddenlens.sae.supervised`` implement Makelov et al.'s principled evaluation.

Names are imported lazily (PEP 562), so ``import hiddenlens.sae`` (e.g. by the CLI parser)
does not import torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "register_architecture": "hiddenlens.sae.registry",
    "architecture_names": "hiddenlens.sae.registry",
    "SAEConfig": "hiddenlens.sae.config",
    "TrainConfig": "hiddenlens.sae.config",
    "BaseSAE": "hiddenlens.sae.base",
    "SAEOutput": "hiddenlens.sae.base",
    "build_sae": "hiddenlens.sae.base",
    "evaluate": "hiddenlens.sae.evaluation",
    "feature_density": "hiddenlens.sae.evaluation",
    "direct_effect": "hiddenlens.sae.inspect",
    "logit_effects": "hiddenlens.sae.inspect",
    "top_activating": "hiddenlens.sae.inspect",
    "load": "hiddenlens.sae.io",
    "load_sparsity": "hiddenlens.sae.io",
    "save_sae": "hiddenlens.sae.io",
    "SupervisedDictionary": "hiddenlens.sae.supervised",
    "SpliceTask": "hiddenlens.sae.principled",
    "spliced_approximation": "hiddenlens.sae.principled",
    "control": "hiddenlens.sae.principled",
    "train": "hiddenlens.sae.trainer",
    "train_many": "hiddenlens.sae.many",
}

__all__ = sorted(_EXPORTS)


_RENAMED = {"architecture_names": "names"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), _RENAMED.get(name, name))
    raise AttributeError(f"module 'hiddenlens.sae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
