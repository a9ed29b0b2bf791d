"""A synthetic two-hop knowledge task and a tiny TransformerLens model trained on it.

Entities and relations are tokens (entities ``0 .. E-1``, relations ``E .. E+R-1``). Each
relation is a random function over the entities; a one-hop fact is ``(e, r) -> r(e)`` and a
two-hop query ``(e1, r1, r2) -> e3 = r2(r1(e1))`` goes through the bridge entity
``e2 = r1(e1)``. The model is trained on every one-hop fact and on a share of the two-hop
queries; the rest are held out, so on a held-out query it knows both hops (they are trained
facts) but has never seen their composition: the setting of Biran et al. 2024 ("Hopping Too
Late"), where a model answers both single hops and still fails the two-hop query.

Sequences: a one-hop fact is ``[e, r]`` with the answer read at position 1; a two-hop query
is ``[e1, r1, r2]`` with the bridge read at position 1 (the same one-hop fact) and the answer
at the last position, where back-patching injects hidden states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class TwoHopTask:
    """relations[r, e]: the entity that relation r maps entity e to.

    train[k] marks whether the two-hop query of :attr:`triples` row k is trained on.
    """

    relations: np.ndarray
    triples: np.ndarray
    train: np.ndarray

    def __post_init__(self) -> None:
        rel = np.asarray(self.relations)
        if rel.ndim != 2 or rel.size == 0:
            raise ValueError(f"relations must be a non-empty [R, E] array, got {rel.shape}")
        if rel.min() < 0 or rel.max() >= rel.shape[1]:
            raise ValueError(f"relations must map into 0..{rel.shape[1] - 1}")
        if len(self.train) != len(self.triples):
            raise ValueError(f"{len(self.train)} train flags for {len(self.triples)} triples")

    @property
    def n_entities(self) -> int:
        return int(self.relations.shape[1])

    @property
    def n_relations(self) -> int:
        return int(self.relations.shape[0])

    @property
    def vocab(self) -> int:
        return self.n_entities + self.n_relations

    def relation_token(self, r) -> np.ndarray:
        return np.asarray(r) + self.n_entities

    def one_hop(self) -> tuple[torch.Tensor, np.ndarray]:
        """Every fact: tokens [E * R, 2] (entity, relation) and answers [E * R]."""
        e, r = np.meshgrid(np.arange(self.n_entities), np.arange(self.n_relations), indexing="ij")
        e, r = e.ravel(), r.ravel()
        toks = np.stack([e, self.relation_token(r)], 1)
        return torch.as_tensor(toks, dtype=torch.long), self.relations[r, e]

    def two_hop(self, split: str) -> dict[str, np.ndarray | torch.Tensor]:
        """Queries of ``split`` ("train", "test" or "all"): tokens [n, 3] (e1, r1, r2) and
        e1, r1, r2, bridge e2 = r1(e1), answer e3 = r2(e2), each [n]."""
        keep = {"train": self.train, "test": ~self.train, "all": np.ones_like(self.train)}
        if split not in keep:
            raise ValueError(f"split must be one of {sorted(keep)}, got {split!r}")
        e1, r1, r2 = self.triples[keep[split]].T
        bridge = self.relations[r1, e1]
        toks = np.stack([e1, self.relation_token(r1), self.relation_token(r2)], 1)
        return {"tokens": torch.as_tensor(toks, dtype=torch.long), "e1": e1, "r1": r1,
                "r2": r2, "bridge": bridge, "answer": self.relations[r2, bridge]}  # fmt: skip


def make_task(n_entities: int, n_relations: int, *, test_share: float = 0.2,
              seed: int = 0) -> TwoHopTask:  # fmt: skip
    """Random relations (each a random map of the entities) and a random held-out share of
    the E * R * R two-hop queries."""
    if n_entities < 2 or n_relations < 1:
        raise ValueError(f"need >= 2 entities and >= 1 relation, got {n_entities}, {n_relations}")
    if not 0.0 < test_share < 1.0:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")
    rng = np.random.default_rng(seed)
    relations = rng.integers(0, n_entities, (n_relations, n_entities))
    grid = np.meshgrid(np.arange(n_entities), np.arange(n_relations), np.arange(n_relations),
                       indexing="ij")  # fmt: skip
    triples = np.stack([g.ravel() for g in grid], 1)  # [E * R * R, 3]: e1, r1, r2
    train = np.ones(len(triples), bool)
    train[rng.permutation(len(triples))[: int(round(test_share * len(triples)))]] = False
    return TwoHopTask(relations, triples, train)


def build_model(vocab: int, *, n_layers: int = 4, d_model: int = 64, seed: int = 0):
    """A small causal HookedTransformer over the task's tokens (context 3)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=n_layers, d_model=d_model, n_heads=4, d_head=d_model // 4, d_mlp=4 * d_model,
        n_ctx=3, d_vocab=vocab, act_fn="relu", normalization_type="LN", seed=seed,
    )  # fmt: skip
    return HookedTransformer(cfg)


def accuracy(model, tokens: torch.Tensor, answers: np.ndarray) -> np.ndarray:
    """[n] whether the model's top token at the last position is the answer."""
    with torch.no_grad():
        pred = model(tokens)[:, -1].argmax(-1).numpy()
    return pred == np.asarray(answers)


def train_model(model, task: TwoHopTask, *, steps: int, lr: float = 1e-3,
                weight_decay: float = 0.1, seed: int = 0) -> list[dict[str, float]]:  # fmt: skip
    """Full-batch AdamW on the cross-entropy of every one-hop fact (position 1) plus every
    trained two-hop query (last position), the two losses weighted equally. Returns a log
    of train / held-out accuracies every tenth of the run."""
    torch.manual_seed(seed)
    one, one_ans = task.one_hop()
    two, test = task.two_hop("train"), task.two_hop("test")
    y1, y2 = torch.as_tensor(one_ans), torch.as_tensor(two["answer"])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    ce = torch.nn.functional.cross_entropy
    log = []
    for step in range(steps):
        model.train()
        loss = ce(model(one)[:, -1], y1) + ce(model(two["tokens"])[:, -1], y2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % max(steps // 10, 1) == 0 or step + 1 == steps:
            model.eval()
            log.append({"step": step + 1, "loss": float(loss.detach()),
                        "one_hop": float(accuracy(model, one, one_ans).mean()),
                        "two_hop_train": float(accuracy(model, two["tokens"], two["answer"]).mean()),
                        "two_hop_test": float(accuracy(model, test["tokens"], test["answer"]).mean())})  # fmt: skip
    model.eval()
    return log
