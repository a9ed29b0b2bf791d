"""Tiny random-init models of every kind hiddenlens supports, built offline in seconds.

Reusable by any test (import ``from tests._models import ...``); ``tests/conftest.py``
exposes the common ones as fixtures. Every builder seeds torch itself so two calls give
the same weights.

- :func:`tiny_tokenizer`: a ``tokenizers`` WordLevel tokenizer over :data:`SENTENCES`,
  wrapped as a ``PreTrainedTokenizerFast`` (BOS/EOS/PAD/UNK specials, GPT-2 style).
- :func:`tiny_gpt2_dir` / :func:`tiny_llama_dir`: causal LMs (``*ForCausalLM``) saved with
  that tokenizer to a directory, loadable by ``load_model(path)``.
- :func:`tiny_bert_dir`: a BERT encoder (``BertModel``) saved with a WordPiece tokenizer.
- :func:`tiny_hooked_transformer` (optionally with the tokenizer, saved) and
  :func:`tiny_tl_dir` (the ``tl:`` directory layout).
- :func:`bn_cnn`, :func:`mlp`, :class:`ScalarParam`: plain modules.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

SENTENCES = [
    "the cat sat on the mat .",
    "a dog ran fast and the cat sat .",
    "hello world , the big red dog .",
    "small cats ran on a big mat .",
    "the model reads the text and writes code .",
    "python is a language for code .",
]
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]


def tiny_tokenizer():
    """A word-level tokenizer trained on :data:`SENTENCES` (adds ``<bos>`` … ``<eos>``)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.train_from_iterator(SENTENCES, trainers.WordLevelTrainer(special_tokens=SPECIALS))
    bos, eos = tok.token_to_id("<bos>"), tok.token_to_id("<eos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", bos), ("<eos>", eos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def _save(model: nn.Module, tokenizer, path: Path) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_gpt2(tokenizer=None, *, vocab_size: int = 64, n_positions: int = 32):
    """A 2-layer GPT-2 LM (``GPT2LMHeadModel``, d 16); over ``tokenizer``'s vocabulary if given."""
    from transformers import GPT2Config, GPT2LMHeadModel

    special = {}
    if tokenizer is not None:
        vocab_size = len(tokenizer)
        special = {
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        }
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=16, n_layer=2, n_head=2, **special
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_gpt2_dir(path) -> Path:
    """A 2-layer GPT-2 LM (``GPT2LMHeadModel``) + tokenizer saved to ``path``."""
    tok = tiny_tokenizer()
    return _save(tiny_gpt2(tok), tok, path)


def tiny_llama_dir(path) -> Path:
    """A 2-layer Llama LM (``LlamaForCausalLM``) + tokenizer saved to ``path``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return _save(LlamaForCausalLM(cfg).eval(), tok, path)


BERT_VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + "the a cat dog sat on mat and ran fast , . 1 2 3 hello world big small red".split()
    + ["##s", "##ing", "##ed"]
)


def tiny_bert(tmp: Path):
    """(BertModel, BertTokenizerFast) with hidden size 16, 2 layers, 24 positions."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tmp = Path(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "vocab.txt").write_text("\n".join(BERT_VOCAB))
    tok = BertTokenizerFast(vocab_file=str(tmp / "vocab.txt"))
    cfg = BertConfig(
        vocab_size=len(BERT_VOCAB),
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=24,
    )
    torch.manual_seed(0)
    return BertModel(cfg).eval(), tok


def tiny_bert_dir(path) -> Path:
    """A 2-layer BERT encoder (``BertModel``) + WordPiece tokenizer saved to ``path``."""
    model, tok = tiny_bert(Path(path) / "_vocab")
    return _save(model, tok, path)


def saved_tokenizer(path):
    """:func:`tiny_tokenizer` saved to ``path`` and reloaded (TransformerLens needs a path)."""
    from transformers import AutoTokenizer

    tiny_tokenizer().save_pretrained(path)
    return AutoTokenizer.from_pretrained(str(path))


def tiny_hooked_transformer(*, tokenizer_dir=None, d_vocab: int = 20, n_ctx: int = 12):
    """A 2-layer TransformerLens HookedTransformer (d_model 16).

    With ``tokenizer_dir`` the tiny tokenizer is saved there and attached (d_vocab = its size).
    """
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tok = saved_tokenizer(tokenizer_dir) if tokenizer_dir is not None else None
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=16,
        n_ctx=n_ctx,
        d_head=4,
        n_heads=4,
        d_mlp=32,
        d_vocab=len(tok) if tok is not None else d_vocab,
        act_fn="gelu",
        normalization_type="LN",
        seed=0,
    )
    return HookedTransformer(cfg, tokenizer=tok).eval()


def tiny_tl_dir(path) -> Path:
    """:func:`tiny_hooked_transformer` with its tokenizer, saved in the ``tl:`` layout."""
    from hiddenlens.hooks import save_hooked_transformer

    path = Path(path)
    model = tiny_hooked_transformer(tokenizer_dir=path / "_tokenizer")
    return save_hooked_transformer(model, path)


def bn_cnn() -> nn.Sequential:
    """Conv-BN-ReLU x2 then a linear head; input [B, 1, 8, 8], 10 classes."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    ).eval()


def mlp() -> nn.Sequential:
    """8 -> 16 -> 16 -> 3 with ReLU / Tanh."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


class ScalarParam(nn.Module):
    """An MLP whose output is scaled by a 0-dim parameter (and holds a 0-dim buffer)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU())
        self.scale = nn.Parameter(torch.tensor(1.5))
        self.register_buffer("step", torch.tensor(3, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * self.scale
