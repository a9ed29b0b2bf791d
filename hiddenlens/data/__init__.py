"""The user's data, understood once: ``as_data(data) -> DataSource``.

Every entry point that takes data (``cache_activations``, the distributed cacher, the CLI's
``--data``, the analyze pipeline) calls :func:`as_data` once; the rest of hiddenlens sees
only a :class:`DataSource`: its kind (text, tokens or examples), its length when known, its
label columns (strings encoded once, the code table kept), ``batches(batch_size, start)``
of normalised :class:`DataBatch` es and a per-example content hash, from which the store
keeps one hash per shard so a resumed run re-checks exactly what it skips.
"""

from hiddenlens.data.batch import ContentHash, DataBatch
from hiddenlens.data.convert import as_data
from hiddenlens.data.labels import LabelColumn
from hiddenlens.data.source import DataSource

__all__ = ["ContentHash", "DataBatch", "DataSource", "LabelColumn", "as_data"]
