"""Activations on disk: a resumable writer, a memory-mapped reader and a shuffled loader.

Every analyzer reads activations through one contract, :class:`ActivationSource`
(:mod:`hiddenlens.store.source`): the on-disk :class:`ActivationStore` and the in-memory
:class:`MemorySource` implement it and :func:`as_source` adapts arrays, dicts and
``(store, hook)`` pairs. The format is documented in docs/store_format.md (and
:mod:`hiddenlens.store.format`).
"""

from hiddenlens.store.distributed import cache_activations_ranked
from hiddenlens.store.format import MANIFEST, SCHEMA_VERSION
from hiddenlens.store.memory import MemorySource
from hiddenlens.store.reader import ActivationStore
from hiddenlens.store.source import ActivationSource, as_source
from hiddenlens.store.top import TopRows, top_rows
from hiddenlens.store.writer import cache_activations

__all__ = [
    "MANIFEST",
    "SCHEMA_VERSION",
    "ActivationSource",
    "ActivationStore",
    "MemorySource",
    "TopRows",
    "as_source",
    "cache_activations",
    "cache_activations_ranked",
    "top_rows",
]
