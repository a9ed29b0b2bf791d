"""Back-patching on a tiny transformer trained on two-hop queries (Biran et al. 2024, "Hopping
Too Late: Exploring the Limitations of Large Language Models on Multi-Hop Queries").

    python -m experiments.back_patching.run --out runs/back_patching [--fast] [--seeds 3]

The paper's claim: when an LLM knows both facts of a two-hop query and still answers it
wrongly, the bridge entity is often resolved too late (at a layer past the ones that can do
the second hop); injecting the last position's hidden state of a later layer j into an
earlier layer i < j of a new forward pass (a back-patch) makes the model answer correctly
for a large share of those failures (up to 57% in papers.md; the brief quotes ~66%). Here: a
synthetic task (``task.py``) whose relations are random maps of entity tokens (20 entities x
8 relations by default); a 4-layer TransformerLens model is trained on every one-hop fact
and on 80% of the two-hop queries. It is scored on the held-out two-hop queries whose two
hops it answers correctly. Every back-patch between the residual stages
(``blocks.{i}.hook_resid_pre`` and the last ``hook_resid_post``) at the last position is run
by :func:`hiddenlens.attribution.back_patching_sweep`. A control injects the same layer's
state taken from another query (a random derangement), so "fixed by some patch" is read
against what any large change of the last position's state gets right by luck. The bridge's
logit-lens rank at the last position (:func:`hiddenlens.attribution.logit_lens`) is compared
on correct and failed queries. Writes report.html, metrics.json, report.md, figures/.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from experiments.back_patching.task import accuracy, build_model, make_task, train_model


def stage_hooks(n_layers: int) -> list[str]:
    """The residual stream at the entry of every block and after the last one."""
    return [f"blocks.{i}.hook_resid_pre" for i in range(n_layers)] + [
        f"blocks.{n_layers - 1}.hook_resid_post"
    ]


def known_queries(model, task) -> tuple[dict, dict[str, float]]:
    """The held-out two-hop queries whose two one-hop facts the model answers correctly
    (the paper keeps only those), and the accuracies around them."""
    one, one_ans = task.one_hop()
    knows = accuracy(model, one, one_ans).reshape(task.n_entities, task.n_relations)
    test = task.two_hop("test")
    keep = knows[test["e1"], test["r1"]] & knows[test["bridge"], test["r2"]]
    q = {k: v[keep] if isinstance(v, np.ndarray) else v[torch.as_tensor(keep)]
         for k, v in test.items()}  # fmt: skip
    train = task.two_hop("train")
    acc = {"one_hop_accuracy": float(knows.mean()),
           "two_hop_train_accuracy": float(accuracy(model, train["tokens"], train["answer"]).mean()),
           "two_hop_test_accuracy": float(accuracy(model, test["tokens"], test["answer"]).mean()),
           "known_share": float(keep.mean())}  # fmt: skip
    return q, acc


def derangement(n: int, seed: int = 0) -> np.ndarray:
    """A random permutation of range(n) without fixed points (one cycle over a shuffle)."""
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    perm = np.empty(n, int)
    perm[order] = np.roll(order, 1)
    return perm


def cross_query_sweep(model, tokens: torch.Tensor, hooks: list[str], answers: np.ndarray,
                      perm: np.ndarray):  # fmt: skip
    """The control grid: like the back-patching sweep, but the state injected at layer i
    is layer j's state of another query (query q gets query perm[q]'s). Returns a
    BackPatchingSweep (correct[j, i, q] judged against q's own answer)."""
    from hiddenlens.attribution import BackPatchingSweep, capture_activations
    from hiddenlens.hooks import patch

    n = len(tokens)
    if len(perm) != n or len(answers) != n:
        raise ValueError(f"{n} queries, {len(perm)} permutation entries, {len(answers)} answers")
    acts = capture_activations(model, tokens, hooks)
    target = torch.as_tensor(answers)
    grid = np.zeros((len(hooks), len(hooks), n), bool)
    with torch.no_grad():
        base = (model(tokens)[:, -1].argmax(-1) == target).numpy()
        for j in range(1, len(hooks)):
            src = acts[hooks[j]][torch.as_tensor(perm), -1]  # [n, d]: another query's state

            def fn(act, src=src):
                new = act.clone()
                new[:, -1] = src
                return new

            for i in range(j):
                with patch(model, {hooks[i]: fn}):
                    grid[j, i] = (model(tokens)[:, -1].argmax(-1) == target).numpy()
    return BackPatchingSweep(grid, base, list(hooks), -1)


def bridge_lens(model, q: dict, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Share of queries whose bridge e2 (and answer e3) is the logit lens's top token at the
    last position, per residual stage, for the correct and the failed queries."""
    from hiddenlens.attribution import logit_lens

    out = {}
    for what in ("bridge", "answer"):
        lens = logit_lens(model, q["tokens"], torch.as_tensor(q[what]), position=-1)
        out["labels"] = lens.labels
        for name, rows in (("correct", correct), ("failed", ~correct)):
            top1 = lens.ranks[:, rows] == 0
            out[f"{what}_{name}"] = top1.mean(1) if rows.any() else np.full(len(top1), np.nan)
    return out


def run_seed(args, seed: int) -> dict:
    """Train one model, then sweep, control and lens on its known held-out queries."""
    from hiddenlens.attribution import back_patching_sweep

    t0 = time.perf_counter()
    task = make_task(args.entities, args.relations, test_share=args.test_share, seed=seed)
    model = build_model(task.vocab, n_layers=args.layers, d_model=args.d_model, seed=seed)
    log = train_model(model, task, steps=args.steps, lr=args.lr, seed=seed)
    trained = time.perf_counter() - t0
    q, acc = known_queries(model, task)
    if len(q["answer"]) < 2:
        raise ValueError(
            f"only {len(q['answer'])} held-out queries whose two hops the model knows; train "
            f"longer (--steps {args.steps}) or hold out more (--test-share {args.test_share})"
        )
    hooks = stage_hooks(args.layers)
    answers = torch.as_tensor(q["answer"])
    sweep = back_patching_sweep(model, q["tokens"], hooks,
                                lambda out: out[:, -1].argmax(-1) == answers)  # fmt: skip
    control = cross_query_sweep(model, q["tokens"], hooks, q["answer"],
                                derangement(len(answers), seed))
    lens = bridge_lens(model, q, sweep.baseline)
    logging.info("seed %d: trained in %.0f s, %s, fixed by any %.3f (control %.3f)", seed,
                 trained, {k: round(v, 3) for k, v in acc.items()}, sweep.fixed_by_any(),
                 control.fixed_by_any())  # fmt: skip
    return {"seed": seed, "sweep": sweep, "control": control, "lens": lens, "acc": acc,
            "log": log, "n_queries": len(answers), "seconds": time.perf_counter() - t0}  # fmt: skip


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/back_patching"))
    parser.add_argument("--entities", type=int, default=20)
    parser.add_argument("--relations", type=int, default=8)
    parser.add_argument("--test-share", type=float, default=0.2)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--fast", action="store_true",
                        help="at most 20 entities, 3 relations, 150 steps; 1 seed")
    args = parser.parse_args(argv)
    # checked before any training, so a bad flag is a usage message, not a traceback
    for flag, value, ok, want in (
        ("--seeds", args.seeds, args.seeds >= 1, ">= 1"),
        ("--entities", args.entities, args.entities >= 2, ">= 2"),
        ("--relations", args.relations, args.relations >= 1, ">= 1"),
        ("--test-share", args.test_share, 0 < args.test_share < 1, "in (0, 1)"),
        ("--layers", args.layers, args.layers >= 1, ">= 1"),
        ("--d-model", args.d_model, args.d_model >= 4 and args.d_model % 4 == 0,
         "a multiple of 4 (4 heads)"),
        ("--steps", args.steps, args.steps >= 1, ">= 1"),
    ):  # fmt: skip
        if not ok:
            parser.error(f"{flag} must be {want}, got {value}")
    if args.fast:
        args.entities, args.relations = min(args.entities, 20), min(args.relations, 3)
        args.steps, args.seeds = min(args.steps, 150), 1
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)  # tiny ops: a second thread only adds synchronisation
    from experiments.back_patching.report import write_outputs

    results = [run_seed(args, seed) for seed in range(args.seeds)]
    lines = write_outputs(args, results)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
