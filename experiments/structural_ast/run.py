"""AST-Probe on all-MiniLM-L6-v2: is Python's syntax tree linearly readable from its layers?

    python -m experiments.structural_ast.run --out runs/structural_ast [--fast]

Statements: one-line statements of a few standard-library modules, with a tree over their
Python tokens read from ``ast`` (``trees.py``). Each token's vector is the mean of its
WordPiece pieces (MiniLM's fast tokenizer gives character offsets). Per layer (the
embeddings and the 6 blocks), a distance structural probe (Hewitt & Manning 2019; rank 64)
is trained on 2/3 of the statements and scored on the rest: Spearman of distances
(averaged per length) and UUAS of the minimum spanning tree. Baselines: the right-branching
chain (every token attached to the one before it), and the same probe on the embedding
layer. Writes metrics.json, figures/ and report.md with what was found.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

MODULES = (
    "json.encoder",
    "textwrap",
    "fractions",
    "statistics",
    "csv",
    "difflib",
    "string",
    "calendar",
    "heapq",
    "bisect",
    "shlex",
    "pprint",
)


def token_vectors(handle, statements):
    """Per layer (7 states), per statement, [n_tokens, 384] means of the pieces."""
    import torch

    tok, model = handle.tokenizer, handle.model
    out = []
    with torch.no_grad():
        for st in statements:
            enc = tok(st.text, return_offsets_mapping=True, return_tensors="pt", truncation=True)
            offsets = enc.pop("offset_mapping")[0].numpy()
            hs = model(**enc, output_hidden_states=True).hidden_states  # 7 x [1, T, 384]
            H = torch.stack(hs)[:, 0].numpy()  # [7, T, 384]
            rows = []
            for s, e in st.spans:
                pieces = [i for i, (a, b) in enumerate(offsets) if b > a and a < e and b > s]
                if not pieces:
                    return None
                rows.append(H[:, pieces].mean(1))
            out.append(np.stack(rows, 1))  # [7, n, 384]
    return out


def chain_uuas(statements) -> float:
    hit = sum(
        sum(1 for i, p in enumerate(st.parents) if p >= 0 and abs(p - i) == 1) for st in statements
    )
    return hit / sum(len(st.parents) - 1 for st in statements)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/structural_ast"))
    parser.add_argument("--statements", type=int, default=600)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fast", action="store_true", help="150 statements, 100 steps")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    import hiddenlens
    from experiments.structural_ast.trees import stdlib_statements
    from hiddenlens._io import write_json, write_text
    from hiddenlens.probe.structural import StructuralProbe
    from hiddenlens.viz.layers import LayerCurves, plot_layer_curves
    from hiddenlens.viz.probe import plot_tree_distances
    from hiddenlens.viz.save import save_figure

    torch.manual_seed(args.seed)
    n_st, steps = (150, 100) if args.fast else (args.statements, args.steps)
    handle = hiddenlens.load_model("minilm")
    sts = stdlib_statements(MODULES, limit=4 * n_st)
    rng = np.random.default_rng(args.seed)
    sts = [sts[i] for i in rng.permutation(len(sts))[:n_st]]
    vecs = token_vectors(handle, sts)
    keep = [i for i, v in enumerate(vecs) if v is not None]
    sts, vecs = [sts[i] for i in keep], [vecs[i] for i in keep]
    n_train = 2 * len(sts) // 3
    layers = ["embeddings"] + [f"encoder.layer.{i}" for i in range(6)]
    spear, uuas, probes = [], [], []
    par = [st.parents for st in sts]
    for layer in range(7):
        H = [v[layer] for v in vecs]
        probe = StructuralProbe(
            "distance", rank=args.rank, n_steps=steps, lr=0.01, seed=args.seed
        ).fit(H[:n_train], par[:n_train])
        res = probe.evaluate(H[n_train:], par[n_train:])
        spear.append(res.spearman)
        uuas.append(res.uuas)
        probes.append(probe)
        logging.info("%s: Spearman %.3f  UUAS %.3f", layers[layer], res.spearman, res.uuas)
    chain = chain_uuas(sts[n_train:])
    best = int(np.argmax(uuas))
    out = args.out
    metrics = {"probe/structural_chain_uuas": chain, "probe/n_statements": len(sts)}
    for layer, s, u in zip(layers, spear, uuas):
        metrics[f"probe/structural_distance_spearman/{layer}"] = s
        metrics[f"probe/structural_uuas/{layer}"] = u
    write_json(out / "metrics.json", {"metrics": metrics, "config": vars(args) | {"out": str(out)}})
    curves = LayerCurves(
        layers,
        {"UUAS": uuas, "distance Spearman": spear},
        reference=chain,
        reference_label="right-branching chain UUAS",
        ylabel="score",
    )
    save_figure(
        plot_layer_curves(curves, title="AST-Probe on MiniLM (held-out statements)"),
        out / "figures" / "structural_by_layer.png",
    )
    ex = n_train + int(np.argmax([len(p) for p in par[n_train:]]))
    pred = probes[best].predict([vecs[ex][best]])[0]
    fig = plot_tree_distances(
        (pred, par[ex]), words=sts[ex].tokens, title=f"{layers[best]}: {sts[ex].text[:50]}"
    )
    save_figure(fig, out / "figures" / "example_tree.png")
    verdict = "above" if uuas[best] > chain + 0.05 else "not clearly above"
    lines = [
        "# AST-Probe on all-MiniLM-L6-v2",
        "",
        f"{len(sts)} one-line statements from {len(MODULES)} stdlib modules, "
        f"{n_train} train / {len(sts) - n_train} test; distance probe rank {args.rank}, "
        f"{steps} Adam steps, seed {args.seed}.",
        "",
        "| layer | Spearman | UUAS |",
        "|---|---|---|",
        *[f"| {la} | {s:.3f} | {u:.3f} |" for la, s, u in zip(layers, spear, uuas)],
        "",
        f"Right-branching chain UUAS: {chain:.3f}. Best layer {layers[best]} "
        f"(UUAS {uuas[best]:.3f}), {verdict} the chain baseline; embeddings UUAS {uuas[0]:.3f}.",
    ]
    write_text(out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
