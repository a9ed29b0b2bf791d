"""Shared tiny models for the tests: random-init, CPU, seconds to build (see tests/_models.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests import _models


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


@pytest.fixture
def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )


@pytest.fixture
def bn_cnn() -> nn.Sequential:
    return _models.bn_cnn()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return _models.tiny_bert(tmp_path_factory.mktemp("bert_vocab"))


@pytest.fixture(scope="session")
def tiny_tl():
    return _models.tiny_hooked_transformer()


@pytest.fixture(scope="session")
def tiny_tl_text(tmp_path_factory):
    """A HookedTransformer with the tiny word-level tokenizer attached."""
    return _models.tiny_hooked_transformer(tokenizer_dir=tmp_path_factory.mktemp("tl_tok"))


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory):
    return _models.tiny_gpt2_dir(tmp_path_factory.mktemp("gpt2"))


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return _models.tiny_llama_dir(tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory):
    return _models.tiny_bert_dir(tmp_path_factory.mktemp("bert"))


@pytest.fixture(scope="session")
def tiny_tl_dir(tmp_path_factory):
    return _models.tiny_tl_dir(tmp_path_factory.mktemp("tl"))
