"""Shared tiny models for the tests: random-init, CPU, seconds to build."""

from __future__ import annotations

import pytest
import torch
from torch import nn


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


@pytest.fixture(scope="session")
def tiny_bert():
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = (
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        + [
            w
            for w in "the a cat dog sat on mat and ran fast , . 1 2 3 hello world big small red".split()
        ]
        + ["##s", "##ing", "##ed"]
    )
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp())
    (tmp / "vocab.txt").write_text("\n".join(vocab))
    tok = BertTokenizerFast(vocab_file=str(tmp / "vocab.txt"))
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=24,
    )
    torch.manual_seed(0)
    model = BertModel(cfg).eval()
    return model, tok


@pytest.fixture(scope="session")
def tiny_tl():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=16,
        n_ctx=12,
        d_head=4,
        n_heads=4,
        d_mlp=32,
        d_vocab=20,
        act_fn="gelu",
        normalization_type="LN",
        seed=0,
    )
    return HookedTransformer(cfg).eval()
