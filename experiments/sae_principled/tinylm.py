"""Makelov et al.'s minimal-latent-set control search on a token attribute of a causal LM.

Model: the bundled tinylm (a 4-layer GPT-2, d_model 128, trained by
``experiments.tinylm.train``; read, not retrained). Items: 32-token windows of the demo
corpus whose next token is a word; attribute ``cap``: that next token starts with a capital
letter. The model's answer is the log-odds of its next-token mass on capitalised versus
lower-case word tokens; only items it gets right are kept (balanced). Each item's
counterfactual is its nearest neighbour (cosine, at the hook) among the items with the
other value: natural text has no minimal counterfactual prompts, so the closest context with
the other value stands in. At ``transformer.h.1`` (the residual after block 1, last position)
we compare the TopK SAE that ``hiddenlens analyze tinylm`` trained (k 16, 1,024 latents),
the supervised dictionary and PCA: per item, the fewest latents copied from the
counterfactual's codes, greedily, until the log-odds change sign.

    python -m experiments.sae_principled.tinylm --out runs/sae_principled_tinylm [--fast]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hiddenlens.sae.principled import (
    PCAAdapter,
    SAEAdapter,
    SpliceTask,
    SupervisedAdapter,
    task_activations,
)
from hiddenlens.sae.principled_search import EditSearchConfig, minimal_edit_search
from hiddenlens.sae.supervised import SupervisedDictionary

WINDOW, HOOK = 32, "transformer.h.1"
MODEL = Path("/work/main/runs/tinylm/model")
SAE_DIR = Path("/work/main/runs/tinylm/report/sae/transformer.h.1")


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/sae_principled_tinylm"))
    ap.add_argument("--model", type=Path, default=MODEL, help="the tinylm directory")
    ap.add_argument("--sae", type=Path, default=SAE_DIR, help="SAE directory at transformer.h.1")
    ap.add_argument("--n-fit", type=int, default=200, help="items per value to fit on")
    ap.add_argument("--n-test", type=int, default=80, help="held-out items per value")
    ap.add_argument("--docs", type=int, default=2000, help="corpus documents to read")
    ap.add_argument("--max-latents", type=int, default=24)
    ap.add_argument("--pca", type=int, default=16)
    ap.add_argument("--fast", action="store_true", help="tiny settings (for a smoke run)")
    args = ap.parse_args(argv)
    if args.fast:
        args.n_fit, args.n_test, args.max_latents, args.docs = 60, 20, 8, 600
    return args


def _word_sets(tok) -> tuple[np.ndarray, np.ndarray]:
    """Boolean [vocab] masks: tokens starting (after a leading space) with A-Z / a-z."""
    text = [tok.decode([i]).lstrip() for i in range(len(tok))]
    cap = np.array([bool(t) and "A" <= t[0] <= "Z" for t in text])
    low = np.array([bool(t) and "a" <= t[0] <= "z" for t in text])
    return cap, low


def _windows(tok, cap, low, n_docs: int | None, seed: int):
    """[m, WINDOW] token windows whose next token is a word, and its capitalisation."""
    from hiddenlens.corpus import demo_corpus

    wins, labels = [], []
    for ids in tok(demo_corpus(n_docs), add_special_tokens=False)["input_ids"]:
        for t in range(WINDOW - 1, len(ids) - 1, 2):
            nxt = ids[t + 1]
            if cap[nxt] or low[nxt]:
                wins.append(ids[t - WINDOW + 1 : t + 1])
                labels.append(int(cap[nxt]))
    order = np.random.default_rng(seed).permutation(len(wins))
    return torch.as_tensor(np.asarray(wins)[order]), np.asarray(labels)[order]


def _log_odds(cap, low):
    cap_t, low_t = torch.as_tensor(cap), torch.as_tensor(low)

    def f(logits):
        return torch.logsumexp(logits[:, cap_t], -1) - torch.logsumexp(logits[:, low_t], -1)

    return f


def _items(handle, args, cap, low):
    """Balanced fit / test items that the model predicts the right way."""
    from hiddenlens.sae.principled import run_patched

    toks, y = _windows(handle.tokenizer, cap, low, args.docs, seed=0)
    probe = SpliceTask(toks, HOOK, {"cap": y}, lambda lg, lb: lg[:, 0], batch_size=256)
    odds = _log_odds(cap, low)(run_patched(handle, probe)).numpy()
    right = (odds > 0) == (y == 1)
    picked = []
    for v in (0, 1):
        idx = np.where(right & (y == v))[0]
        need = args.n_fit + args.n_test
        if len(idx) < need:
            raise ValueError(f"only {len(idx)} correctly predicted items with cap={v}; need {need}")
        picked.append(idx[:need])
    fit = np.concatenate([p[: args.n_fit] for p in picked])
    test = np.concatenate([p[args.n_fit :] for p in picked])
    info = {"items": len(y), "share_capitalised": float(y.mean()), "model_accuracy": right.mean()}
    return toks, y, fit, test, info


def _dictionaries(args, x_fit, y_fit):
    from hiddenlens.sae import load

    return {
        "sae_topk16": SAEAdapter(load(args.sae)),
        "supervised": SupervisedAdapter(SupervisedDictionary().fit(x_fit, {"cap": y_fit})),
        f"pca{args.pca}": PCAAdapter(args.pca).fit(x_fit),
    }


def _counterfactuals(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Index of each row's nearest neighbour (cosine) among the rows of the other value."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    sim[y[:, None] == y[None, :]] = -np.inf
    return sim.argmax(1)


def _run(args):
    from hiddenlens.hooks import load_model

    handle = load_model(str(args.model))
    handle.model.eval()
    cap, low = _word_sets(handle.tokenizer)
    toks, y, fit, test, info = _items(handle, args, cap, low)
    odds = _log_odds(cap, low)
    task_of = {
        name: SpliceTask(toks[idx], HOOK, {"cap": y[idx]}, lambda lg, lb: odds(lg), batch_size=256)
        for name, idx in (("fit", fit), ("test", test))
    }
    x_fit, x = task_activations(handle, task_of["fit"]), task_activations(handle, task_of["test"])
    y_test = y[test]
    nn = _counterfactuals(x, y_test)
    sign = torch.as_tensor(np.where(y_test == 1, -1.0, 1.0))  # towards the other value

    def score(logits, idx):
        return sign[idx] * odds(logits)

    rows, results = [], {}
    for name, d in _dictionaries(args, x_fit, y[fit]).items():
        for rank_by in ("output", "distance"):
            cfg = EditSearchConfig(max_latents=args.max_latents, rank_by=rank_by)
            res = minimal_edit_search(
                d, handle, task_of["test"], (x[nn], {"cap": 1 - y_test}), cfg, x=x, score=score
            )
            results[(name, rank_by)] = res
            rows.append({"dictionary": name, **res.summary()})
    info["cf_same_context_share"] = float((np.linalg.norm(x - x[nn], axis=1) == 0).mean())
    return rows, results, info


def _report(args, rows, results, info):
    from hiddenlens.report import Report
    from hiddenlens.viz.sae import plot_edit_success

    report = Report(
        "Minimal latent set to flip 'next token is capitalised' in tinylm",
        config={k: str(v) for k, v in vars(args).items()},
    )
    for (name, rank_by), res in results.items():
        if rank_by == "output":
            report.add_metrics(res.to_metrics(f"{name}/{HOOK}"))
    report.add_section("Setup", text=__doc__.split("\n\n")[1]).add_metrics(
        {f"sae/{k}": float(v) for k, v in info.items()}
    )
    sec = report.add_section(
        "Edit success vs latents copied from the counterfactual",
        text="min_latents: the fewest latents with which 90% of the items' log-odds change "
        "sign; success_full: every differing latent copied (the ceiling); rank_by output: "
        "greedy on the model's log-odds, distance: greedy on the reconstruction's distance "
        "to the counterfactual's.",
    )
    sec.add_table([{k: v for k, v in r.items() if k != "curve"} for r in rows])
    curves = {n: r for (n, rb), r in results.items() if rb == "output"}
    sec.add_figure(plot_edit_success(curves, title=f"tinylm {HOOK}: cap <-> lower"), "edit_search")
    return report.write(args.out)


def main(argv: list[str] | None = None) -> int:
    from hiddenlens import torch_threads
    from hiddenlens.report import write_json

    args = _args(argv)
    t0 = time.time()
    with torch_threads(1), torch.no_grad():
        rows, results, info = _run(args)
    info["seconds"] = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "edit_search.json", {"rows": rows, "info": info}, indent=2)
    path = _report(args, rows, results, info)
    lines = [f"items {info['items']}, model accuracy on cap {info['model_accuracy']:.3f} "
             f"({info['seconds']:.0f} s)"]  # fmt: skip
    lines += [
        f"{r['dictionary']:>11} ({r['rank_by']:>8}): min_latents {r['min_latents']}  "
        f"mean set {r['mean_set_size'] or float('nan'):.2f}  success@max "
        f"{r['success_at_max']:.3f}  success_full {r['success_full']:.3f}"
        for r in rows
    ]
    sys.stdout.write("\n".join(lines) + f"\nreport: {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
