"""What every analyze section receives: the model, the store, row labels, trained SAEs."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def is_language_model(handle) -> bool:
    """True when the model returns next-token logits: CE-loss metrics apply."""
    return bool(handle.has_lm_head)


def is_text_encoder(handle) -> bool:
    """A Hugging Face text encoder (sentence embeddings by mean pooling; no LM head)."""
    return handle.kind == "hf-encoder" and handle.is_text


def model_kind(handle) -> str:
    """'language model', 'text encoder' or 'module' (what the report says it treated)."""
    if is_language_model(handle):
        return "language model"
    return "text encoder" if is_text_encoder(handle) else "module"


def safe_name(hook: str) -> str:
    """A hook point as a file-system name (``:`` and ``#`` and ``/`` replaced)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", hook)


@dataclass
class Context:
    """Shared state of one run (built by ``hiddenlens.analyze.pipeline``)."""

    cfg: Any  # RunConfig
    handle: Any  # ModelHandle
    store: Any  # ActivationStore of cfg.cache.hooks
    data: Any  # inputs.RunData
    labels: Any  # inputs.RowLabels (one value per store row)
    out_dir: Path
    saes: dict[str, Any] = field(default_factory=dict)  # hook -> trained SAE
    seed: int = 0

    @property
    def hooks(self) -> list[str]:
        return list(self.store.hook_points)

    @property
    def handle_device(self):
        """The device of the model's parameters (SAEs train and run there too)."""
        import torch

        return next(self.handle.model.parameters(), torch.empty(0)).device

    @property
    def texts(self) -> list[str] | None:
        return self.data.texts

    def hooks_for(self, patterns: list[str] | None) -> list[str]:
        """Cached hooks matching ``patterns`` (names or globs), in store order; all if None."""
        if not patterns:
            return self.hooks
        # every pattern must match: a typo beside a good name would be dropped unseen
        unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(h, p) for h in self.hooks)]
        if unmatched:
            raise ValueError(
                f"hooks {unmatched} match no cached hook point (of {patterns}); "
                f"cached: {self.hooks}"
            )
        return [h for h in self.hooks if any(fnmatch.fnmatchcase(h, p) for p in patterns)]

    def middle_hook(self) -> str:
        return self.hooks[len(self.hooks) // 2]

    def sample(self, n: int, *, seed_offset: int = 0) -> np.ndarray:
        """Sorted random row indices (at most ``n``) of the store."""
        rng = np.random.default_rng(self.seed + seed_offset)
        total = len(self.store)
        return np.sort(rng.choice(total, size=min(n, total), replace=False))

    def rows(self, hook: str, idx: np.ndarray) -> np.ndarray:
        """float32 rows ``idx`` of ``hook``."""
        from hiddenlens.store.source import read_hooks

        return read_hooks(self.store, [hook], idx)[hook].astype(np.float32, copy=False)

    @property
    def groups(self) -> np.ndarray:
        """The document (sample) each row came from: folds are grouped by it."""
        return np.asarray(self.store.meta["sample_idx"])


def first_of(metrics: dict, *keys: str) -> float:
    """The value of the first of ``keys`` present in ``metrics`` (analyzers name a metric
    ``metric/where`` or ``analyzer/metric/where``; a section reads either)."""
    for key in keys:
        if key in metrics:
            return metrics[key]
    raise KeyError(f"none of {keys} in the metrics; found {sorted(metrics)[:12]}")
