"""Activations on disk: a resumable writer, a memory-mapped reader and a shuffled loader.

The format is documented in docs/store_format.md (and :mod:`hiddenlens.store.format`).
"""

from hiddenlens.store.distributed import cache_activations_ranked
from hiddenlens.store.format import MANIFEST, SCHEMA_VERSION
from hiddenlens.store.reader import ActivationStore
from hiddenlens.store.writer import cache_activations

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "ActivationStore",
    "cache_activations",
    "cache_activations_ranked",
]
