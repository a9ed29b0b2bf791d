"""Codebook features: discrete, sparse bottlenecks inside a network.

Implements "Codebook Features: Sparse and Discrete Interpretability for Neural Networks"
(Tamkin, Taufeeque & Goodman, 2023): attach top-k codebooks at hook points, fine-tune them,
record which codes fire, search codes for properties and force codes on to steer.

    cb = attach(model, ["blocks.*.hook_resid_post"], n_codes=1000, k=1, init=store)
    finetune(cb, batches, loss_fn, steps=500)
    codes = record_codes(cb, batches)
    with force(cb, {"blocks.0.hook_resid_post": [17]}):
        logits = model(tokens)
    cb.detach()
"""

from hiddenlens.codebook.attach import CodebookModel, attach, attached_codebooks
from hiddenlens.codebook.finetune import FinetuneConfig, finetune
from hiddenlens.codebook.force import force, jsd, output_shift
from hiddenlens.codebook.io import load, load_codes, save, save_codes
from hiddenlens.codebook.kmeans import kmeans
from hiddenlens.codebook.layer import CodebookConfig, CodebookLayer, topk_codes
from hiddenlens.codebook.search import (
    CodeMatch,
    best_code_f1,
    best_neuron_f1,
    compare_with_neurons,
    regex_mask,
    search_codes,
    token_set_mask,
)
from hiddenlens.codebook.stats import (
    all_layer_stats,
    code_usage,
    layer_stats,
    per_code_table,
    purity_nmi,
    record_codes,
)

__all__ = [
    "CodeMatch",
    "CodebookConfig",
    "CodebookLayer",
    "CodebookModel",
    "FinetuneConfig",
    "all_layer_stats",
    "attach",
    "attached_codebooks",
    "best_code_f1",
    "best_neuron_f1",
    "code_usage",
    "compare_with_neurons",
    "finetune",
    "force",
    "jsd",
    "kmeans",
    "layer_stats",
    "load",
    "load_codes",
    "output_shift",
    "per_code_table",
    "purity_nmi",
    "record_codes",
    "regex_mask",
    "save",
    "save_codes",
    "search_codes",
    "token_set_mask",
    "topk_codes",
]
