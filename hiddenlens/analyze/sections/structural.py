"""Section: is Python's syntax tree linearly readable from the model's layers?

Structural probes (Hewitt & Manning 2019, "A Structural Probe for Finding Syntax in Word
Representations") applied to code as in the AST-Probe (Hernández López et al. 2022): one-line
Python statements with a tree over their tokens read from ``ast``
(:mod:`hiddenlens.probe.trees`); each Python token's vector at a hook is the mean of the
tokenizer pieces that overlap it. Per cached sequence hook, a distance probe (UUAS of the
minimum spanning tree, distance Spearman) and a depth probe (root accuracy, depth Spearman)
are trained on 2/3 of the statements and scored on the rest. The baseline is the
right-branching chain (each token attached to the one before it): a probe that reads syntax
must beat it. Models without a fast tokenizer or without token rows say why it does not apply.
"""

from __future__ import annotations

import numpy as np
import torch

from hiddenlens._keys import metric_key

USES_SAE = False
TRAIN_SHARE = 2 / 3


def _statements(ctx, cfg) -> tuple[list, str]:
    """(statements, where they came from, in words)."""
    from hiddenlens.probe.trees import STDLIB_MODULES, parse_statements, stdlib_statements

    if cfg.statements == "data":
        sts = parse_statements(ctx.texts or [])
        where = "the run's texts that parse as one-line Python statements"
    else:
        sts = stdlib_statements(limit=4 * cfg.n_statements)
        where = f"one-line statements of {len(STDLIB_MODULES)} standard-library modules"
    rng = np.random.default_rng(ctx.seed + 23)
    return [sts[i] for i in rng.permutation(len(sts))[: cfg.n_statements]], where


def _vectors(ctx, hooks, statements, batch_size: int):
    """({hook: [n_tokens, d] per kept statement}, kept statements): piece means per token;
    a statement whose tokens lost their pieces to truncation is dropped."""
    from hiddenlens.hooks import capture
    from hiddenlens.probe.trees import piece_groups

    handle, seq_len = ctx.handle, ctx.cfg.model.seq_len
    out: dict[str, list[np.ndarray]] = {h: [] for h in hooks}
    kept = []
    for b0 in range(0, len(statements), batch_size):
        chunk = statements[b0 : b0 + batch_size]
        batch = handle.tokenize([st.text for st in chunk], seq_len=seq_len, offsets=True)
        offsets = batch.pop("offset_mapping").tolist()
        with torch.no_grad(), capture(handle, hooks) as cap:
            handle.forward(batch)
        acts = {h: cap[h].float().cpu().numpy() for h in hooks}
        for i, st in enumerate(chunk):
            groups = piece_groups(offsets[i], st.spans)
            if groups is None:
                continue
            kept.append(st)
            for h in hooks:
                out[h].append(np.stack([acts[h][i, g].mean(0) for g in groups]))
    return out, kept


def _sequence_hooks(ctx, cfg, statement) -> tuple[list[str], list[str]]:
    """(hooks whose activation is [batch, seq, d], the others)."""
    from hiddenlens.hooks import capture

    hooks = ctx.hooks_for(cfg.hooks)
    batch = ctx.handle.tokenize([statement.text], seq_len=ctx.cfg.model.seq_len)
    with torch.no_grad(), capture(ctx.handle, hooks) as cap:
        ctx.handle.forward(batch)
    seq = batch["input_ids"].shape[1]
    good = [h for h in hooks if cap[h].ndim == 3 and cap[h].shape[1] == seq]
    return good, [h for h in hooks if h not in good]


def _probe(cfg, seed, H, parents, n_train):
    """(distance result, depth result, fitted distance probe) for one hook."""
    from hiddenlens.probe.structural import StructuralProbe

    kw = dict(rank=cfg.rank, n_steps=cfg.steps, lr=cfg.lr, seed=seed)
    dist = StructuralProbe("distance", **kw).fit(H[:n_train], parents[:n_train])
    depth = StructuralProbe("depth", **kw).fit(H[:n_train], parents[:n_train])
    test = (H[n_train:], parents[n_train:])
    return dist.evaluate(*test), depth.evaluate(*test), dist


def _why_not(ctx) -> str | None:
    tok = getattr(ctx.handle, "tokenizer", None)
    if ctx.texts is None or tok is None:
        return "it reads text through the model's tokenizer, and this run has none"
    if not getattr(tok, "is_fast", False):
        return f"it needs character offsets from a fast tokenizer ({type(tok).__name__} has none)"
    return None


def run(ctx, cfg, report) -> None:
    from hiddenlens.probe.trees import chain_baselines
    from hiddenlens.viz.layers import LayerCurves, plot_layer_curves
    from hiddenlens.viz.probe import plot_tree_distances

    sec = report.add_section("Structural probe: Python syntax trees")
    why = _why_not(ctx)
    statements, where = _statements(ctx, cfg) if why is None else ([], "")
    if why is None and len(statements) < 12:
        why = f"only {len(statements)} usable statements were found in {where} (12 needed)"
    if why:
        sec.add_text(f"Not run: {why}.")
        return
    hooks, skipped = _sequence_hooks(ctx, cfg, statements[0])
    if not hooks:
        sec.add_text(f"Not run: no cached hook has one vector per token ([batch, seq, d]); "
                     f"cached: {', '.join(skipped)}.")
        return
    n_found = len(statements)
    vecs, statements = _vectors(ctx, hooks, statements, ctx.cfg.model.batch_size)
    if len(statements) < 12:
        sec.add_text(f"Not run: only {len(statements)} of {n_found} statements from {where} "
                     f"survive truncation (model.seq_len = {ctx.cfg.model.seq_len}, or the model's own "
                     "limit when unset) with every "
                     "Python token kept (12 needed).")
        return
    n_train = int(len(statements) * TRAIN_SHARE)
    parents = [st.parents for st in statements]
    base = chain_baselines(parents[n_train:])
    chain = base["uuas"]
    metrics = {metric_key("probe", "structural_chain_uuas"): chain,
               metric_key("probe", "structural_position_root_accuracy"): base["root_accuracy"],
               metric_key("probe", "structural_n_statements"): float(len(statements))}
    uuas, spear, root, fitted = [], [], [], {}
    for h in hooks:
        dist, depth, fitted[h] = _probe(cfg, ctx.seed, vecs[h], parents, n_train)
        metrics |= dist.to_metrics(h) | depth.to_metrics(h)
        uuas.append(dist.uuas)
        spear.append(dist.spearman)
        root.append(depth.root_accuracy)
    curves = LayerCurves(hooks, {"UUAS": uuas, "distance Spearman": spear, "root accuracy": root},
                         reference=chain, reference_label="right-branching chain UUAS",
                         ylabel="score (held-out statements)")
    sec.add_figure(plot_layer_curves(curves), "structural_by_layer",
                   caption="distance probe UUAS and Spearman, depth probe root accuracy, per hook")
    best = hooks[int(np.argmax(uuas))]
    ex = n_train + int(np.argmax([len(p) for p in parents[n_train:]]))
    pred = fitted[best].predict([vecs[best][ex]])[0]
    sec.add_figure(plot_tree_distances((pred, parents[ex]), words=statements[ex].tokens,
                                       title=f"{best}: {statements[ex].text[:50]}"),
                   "structural_tree", caption="predicted squared distances on one held-out "
                   "statement; dots mark the gold tree's edges")
    verdict = "above" if max(uuas) > chain + 0.05 else "not clearly above"
    notes = [f"{len(statements)} statements ({where}): {n_train} train, "
             f"{len(statements) - n_train} test; probes of rank {cfg.rank}, {cfg.steps} Adam "
             f"steps. Best UUAS {max(uuas):.3f} at {best}, {verdict} the right-branching chain "
             f"({chain:.3f}); best root accuracy {max(root):.3f} (the first token as root: "
             f"{base['root_accuracy']:.3f})."]
    if skipped:
        notes.append(f"Left out (not one vector per token): {', '.join(skipped)}.")
    sec.add_text(" ".join(notes))
    sec.add_metrics(metrics)
