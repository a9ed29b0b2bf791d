"""Train a small GPT-2-style causal LM on the bundled demo corpus, for the second bundled
analyze config (``hiddenlens analyze tinylm``), where the CE-loss recovered score applies.

    python -m experiments.tinylm.train --out runs/tinylm/model [--minutes 4]

What it is: a byte-level BPE tokenizer (vocabulary 4,096) trained on the corpus, and a
4-layer GPT-2 (``GPT2LMHeadModel``, d_model 128, 4 heads, context 128) trained with AdamW
on packed 128-token sequences of 95% of the documents for a fixed wall-clock budget; the
other 5% give the held-out loss printed at the end. Both are saved with ``save_pretrained``
to one directory, which ``hiddenlens.load_model(path)`` loads with its LM head.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

SEQ, VOCAB, SPECIALS = 128, 4096, ["<pad>", "<bos>", "<eos>"]
TRAIN_FRACTION = 0.95


def split_corpus(texts: list[str]) -> tuple[list[str], list[str]]:
    """(training documents, held-out documents): the first 95% and the rest, in order."""
    split = int(TRAIN_FRACTION * len(texts))
    return texts[:split], texts[split:]


def train_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", model_max_length=SEQ)


def packed(tok, texts: list[str]) -> torch.Tensor:
    """All documents, each followed by <eos>, cut into [n, SEQ] token blocks."""
    ids: list[int] = []
    for enc in tok(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(enc + [tok.eos_token_id])
    n = len(ids) // SEQ
    return torch.tensor(ids[: n * SEQ]).view(n, SEQ)


def build_model(vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=SEQ, n_embd=128, n_layer=4, n_head=4,
                     bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return GPT2LMHeadModel(cfg)


@torch.no_grad()
def held_out_loss(model, blocks: torch.Tensor) -> float:
    model.eval()
    losses = [float(model(b, labels=b).loss) for b in blocks.split(32)]
    model.train()
    return sum(losses) / len(losses)


def train(model, blocks: torch.Tensor, seconds: float, batch: int = 16, lr: float = 3e-3) -> dict:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    t0, step, losses = time.perf_counter(), 0, []
    model.train()
    while time.perf_counter() - t0 < seconds:
        frac = min((time.perf_counter() - t0) / seconds, 1.0)
        for group in opt.param_groups:  # warm-up then cosine decay over the time budget
            group["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * frac))
        idx = torch.randint(0, len(blocks), (batch,), generator=g)
        loss = model(blocks[idx], labels=blocks[idx]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        step += 1
    return {"steps": step, "seconds": time.perf_counter() - t0,
            "train_loss_last50": sum(losses[-50:]) / max(len(losses[-50:]), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/tinylm/model"))
    parser.add_argument("--minutes", type=float, default=4.0, help="training wall-clock budget")
    args = parser.parse_args(argv)
    from hiddenlens._io import write_json
    from hiddenlens.corpus import demo_corpus

    train_texts, test_texts = split_corpus(demo_corpus())
    tok = train_tokenizer(train_texts)
    train_blocks, test_blocks = packed(tok, train_texts), packed(tok, test_texts)
    model = build_model(len(tok))
    before = held_out_loss(model, test_blocks)
    info = train(model, train_blocks, args.minutes * 60)
    info |= {"held_out_loss_init": before, "held_out_loss": held_out_loss(model, test_blocks),
             "train_tokens_available": train_blocks.numel(), "vocab_size": len(tok)}
    args.out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(args.out)
    tok.save_pretrained(args.out)
    write_json(args.out / "training.json", info)
    sys.stdout.write(json.dumps(info, indent=1) + f"\nsaved to {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
