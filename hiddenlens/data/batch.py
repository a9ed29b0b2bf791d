"""One batch of the user's data, normalised, and the content hash that covers it.

Every example is hashed on its own (sha256 of its framed bytes and its encoded labels), so
the hash of a run of examples does not depend on how they were batched; a shard's hash is
the sha256 of its examples' digests in order (:class:`ContentHash`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

DIGEST_BYTES = 32
KINDS = ("text", "tokens", "examples")


def _frame(h: Any, b: bytes) -> None:
    h.update(len(b).to_bytes(8, "little"))
    h.update(b)


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: hash its bits
        t = t.view(torch.int16)
    return t.numpy()


@dataclass
class DataBatch:
    """Examples ``start .. start + len - 1`` of a DataSource.

    ``inputs``: ``list[str]`` (text), ``LongTensor [b, seq]`` (tokens) or a tensor
    ``[b, ...]`` (examples). ``attention_mask`` ``[b, seq]`` (tokens, when known).
    ``labels``: name -> ``[b]`` encoded values.
    """

    start: int
    inputs: Any
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    attention_mask: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    @property
    def stop(self) -> int:
        return self.start + len(self)

    def head(self, n: int) -> DataBatch:
        """The first ``n`` examples."""
        mask = self.attention_mask[:n] if self.attention_mask is not None else None
        labels = {k: v[:n] for k, v in self.labels.items()}
        return DataBatch(self.start, self.inputs[:n], labels, mask)

    def _example_bytes(self) -> list[bytes]:
        if isinstance(self.inputs, list):
            return [t.encode("utf-8", "surrogatepass") for t in self.inputs]
        arr = _as_numpy(self.inputs)
        head = f"{arr.dtype.str}{arr.shape[1:]}".encode()
        if self.attention_mask is None:
            return [head + row.tobytes() for row in arr]
        mask = _as_numpy(self.attention_mask.to(torch.int8))
        return [head + row.tobytes() + m.tobytes() for row, m in zip(arr, mask)]

    def digests(self) -> bytes:
        """``len(self) * 32`` bytes: the sha256 of every example with its labels."""
        labels = [
            (name.encode(), arr.dtype.str.encode(), arr)
            for name, arr in sorted(self.labels.items())
        ]
        out = bytearray()
        for i, raw in enumerate(self._example_bytes()):
            h = hashlib.sha256()
            _frame(h, raw)
            for name, dtype, arr in labels:
                _frame(h, name)
                _frame(h, dtype + arr[i : i + 1].tobytes())
            out += h.digest()
        return bytes(out)


class ContentHash:
    """A running hash over example digests: equal for equal examples in equal order."""

    def __init__(self) -> None:
        self._h = hashlib.sha256()
        self.n = 0

    def update(self, digests: bytes) -> None:
        self._h.update(digests)
        self.n += len(digests) // DIGEST_BYTES

    def hexdigest(self) -> str:
        return self._h.hexdigest()
