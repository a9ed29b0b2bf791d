"""Tiny deterministic models and data for the store tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn


@pytest.fixture
def tensor_data() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(300, 8, generator=g)


@pytest.fixture
def mlp_model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


@pytest.fixture
def text_handle(tiny_bert):
    from hiddenlens.hooks import ModelHandle

    model, tok = tiny_bert
    return ModelHandle(model, tok, "hf", "tiny-bert", max_length=24)


@pytest.fixture
def texts() -> list[str]:
    words = "the a cat dog sat on mat and ran fast , . 1 2 3 hello world big small red".split()
    g = torch.Generator().manual_seed(2)
    out = []
    for i in range(40):
        n = 1 + int(torch.randint(0, 12, (1,), generator=g))
        idx = torch.randint(0, len(words), (n,), generator=g).tolist()
        out.append(" ".join(words[j] for j in idx) + ("ing" if i % 5 == 0 else ""))
    return out


ID_ROWS = 1000


class _Double(nn.Module):
    def forward(self, x):
        return 2 * x


@pytest.fixture(scope="module")
def id_store(tmp_path_factory):
    """Rows whose first column is the row index, and a second hook equal to twice the first."""
    from hiddenlens.store import cache_activations

    data = torch.randn(ID_ROWS, 6, generator=torch.Generator().manual_seed(0))
    data[:, 0] = torch.arange(ID_ROWS, dtype=torch.float32)
    model = nn.Sequential(nn.Identity(), _Double())
    out = tmp_path_factory.mktemp("ids") / "s"
    return cache_activations(model, data, ["0", "1"], out, batch_size=64, shard_size_mb=0.01)


class InterruptAfter(nn.Module):
    """Raises KeyboardInterrupt (a Ctrl-C) on the n-th forward call, once."""

    def __init__(self, n: int):
        super().__init__()
        self.calls, self.n = 0, n

    def forward(self, x):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return x


def as_schema1(out, edit=None) -> dict:
    """Rewrite the store in ``out`` in the schema-1 layout (every shard record listed inline
    in manifest.json, no shards.npy), as stores written before the shard table are;
    ``edit(manifest_dict)`` may change it first. Returns the manifest written."""
    import json
    from pathlib import Path

    from hiddenlens.store import ActivationStore
    from hiddenlens.store import format as fmt

    out = Path(out)
    m = ActivationStore.open(out, verify=False).manifest
    m["schema_version"] = 1
    if edit is not None:
        edit(m)
    (out / fmt.TABLE).unlink()
    (out / fmt.MANIFEST).write_text(json.dumps(m, indent=1))
    return m
