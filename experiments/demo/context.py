"""What every demo section receives: the model, the cached store, token labels, the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class DemoContext:
    """Shared state of one demo run (see experiments/demo/run.py)."""

    handle: Any  # hiddenlens ModelHandle for MiniLM
    store: Any  # hiddenlens ActivationStore with ctx.hooks cached
    hooks: list[str]
    texts: list[str]
    token_labels: dict[str, np.ndarray]  # per store row
    report: Any  # hiddenlens Report
    out_dir: Path
    seed: int = 0
    fast: bool = False
    artifacts: dict[str, Any] = field(default_factory=dict)

    def token_kind(self) -> tuple[np.ndarray, list[str]]:
        """A 5-class token label per row: digit, capitalised, punct, continuation, other."""
        names = ["digit", "capitalised", "punct", "continuation", "other"]
        kind = np.full(len(self.token_labels["position"]), 4, dtype=np.int64)
        for i, key in enumerate(["is_continuation", "is_punct", "is_capitalised", "is_digit"]):
            kind[self.token_labels[key]] = 3 - i
        return kind, names
