"""A toy indirect-object-identification (IOI) task and a 2-layer transformer that solves it.

Sequences are ``A B f f S ->`` over a vocabulary of names, fillers and a query token: ABBA
items read ``IO S f f S ->``, BABA items ``S IO f f S ->``. At the query position the model
must output the name that appeared once (the indirect object, IO). The attributes IO name,
S name and order (ABBA/BABA) are known per item, and IO causes the output: this is the
setting of Makelov, Lange & Nanda 2024 (GPT-2 small on IOI), shrunk to fit on a CPU.
"""

from __future__ import annotations

import numpy as np
import torch

N_NAMES, N_FILLERS = 8, 8
QUERY = N_NAMES + N_FILLERS
VOCAB = QUERY + 1
SEQ_LEN = 6


def make_items(n: int, seed: int = 0) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """n random items: token ids [n, 6] and labels io, s, order (0 = ABBA, 1 = BABA)."""
    rng = np.random.default_rng(seed)
    io = rng.integers(0, N_NAMES, n)
    s = (io + rng.integers(1, N_NAMES, n)) % N_NAMES  # any name but IO
    order = rng.integers(0, 2, n)
    fill = N_NAMES + rng.integers(0, N_FILLERS, (n, 2))
    first = np.where(order == 0, io, s)
    second = np.where(order == 0, s, io)
    toks = np.stack([first, second, fill[:, 0], fill[:, 1], s, np.full(n, QUERY)], 1)
    return torch.as_tensor(toks, dtype=torch.long), {"io": io, "s": s, "order": order}


def build_model(d_model: int = 64, seed: int = 0):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=d_model,
        n_heads=4,
        d_head=d_model // 4,
        d_mlp=4 * d_model,
        n_ctx=SEQ_LEN,
        d_vocab=VOCAB,
        act_fn="relu",
        normalization_type="LN",
        seed=seed,
    )
    return HookedTransformer(cfg)


def train_model(model, steps: int, *, batch_size: int = 256, lr: float = 3e-3, seed: int = 0):
    """Cross-entropy on the IO name at the query position; returns final train accuracy."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    acc = 0.0
    for step in range(steps):
        toks, lab = make_items(batch_size, seed=seed * 100_003 + step + 1)
        logits = model(toks)[:, -1]
        target = torch.as_tensor(lab["io"])
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        acc = float((logits.argmax(-1) == target).float().mean())
    model.eval()
    return acc


def logit_diff(logits: torch.Tensor, labels: dict[str, np.ndarray]) -> torch.Tensor:
    """The IOI metric: logit(IO) - logit(S) at the query position."""
    idx = torch.arange(len(logits))
    io, s = torch.as_tensor(labels["io"]), torch.as_tensor(labels["s"])
    return logits[idx, io] - logits[idx, s]


def answer(labels: dict[str, np.ndarray]) -> np.ndarray:
    """The correct output token under the given labels: the IO name."""
    return np.asarray(labels["io"])


def io_targets(labels: dict[str, np.ndarray], seed: int = 0) -> np.ndarray:
    """A new IO name per item, different from both the current IO and S names."""
    rng = np.random.default_rng(seed)
    io, s = labels["io"], labels["s"]
    out = io.copy()
    for i in range(len(io)):
        choices = [v for v in range(N_NAMES) if v not in (io[i], s[i])]
        out[i] = rng.choice(choices)
    return out


def counterfactual_items(
    tokens: torch.Tensor, labels: dict[str, np.ndarray], new_io: np.ndarray
) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """The same items with the IO name replaced by ``new_io`` (position 0 in ABBA, 1 in
    BABA): everything else (S, order, fillers) is unchanged, so only the attribute moves."""
    toks = tokens.clone()
    pos = torch.as_tensor(np.where(labels["order"] == 0, 0, 1))
    rows = torch.arange(len(toks))
    if not bool((toks[rows, pos] == torch.as_tensor(labels["io"])).all()):
        raise ValueError("tokens and labels disagree on where the IO name is")
    toks[rows, pos] = torch.as_tensor(np.asarray(new_io), dtype=toks.dtype)
    return toks, {**labels, "io": np.asarray(new_io)}
