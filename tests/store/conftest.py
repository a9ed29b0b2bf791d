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
