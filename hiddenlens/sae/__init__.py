"""Sparse autoencoders on cached activations: architectures, training, evaluation, formats.

Architectures (one module each in ``hiddenlens.sae.architectures``): relu, topk, batchtopk,
jumprelu, gated, gradient_topk. ``train`` fits one on a store's hook point, ``evaluate``
measures it, ``load`` reads hiddenlens / SAELens / sparsify directories.
"""

from hiddenlens.sae.base import BaseSAE, SAEOutput, build_sae
from hiddenlens.sae.config import ARCHITECTURES, SAEConfig, TrainConfig
from hiddenlens.sae.evaluate import evaluate, feature_density
from hiddenlens.sae.io import load, load_sparsity, save_sae
from hiddenlens.sae.train import train

__all__ = [
    "ARCHITECTURES",
    "BaseSAE",
    "SAEConfig",
    "SAEOutput",
    "TrainConfig",
    "build_sae",
    "evaluate",
    "feature_density",
    "load",
    "load_sparsity",
    "save_sae",
    "train",
]
