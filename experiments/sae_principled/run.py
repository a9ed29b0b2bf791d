"""Principled evaluation of dictionaries on a toy IOI task (Makelov, Lange & Nanda 2024).

A 2-layer TransformerLens model (d_model 64) is trained to output the indirect object of
``A B f f S ->`` sequences. At the query position of each hook point (default
``blocks.1.hook_resid_mid``, through which everything the output depends on passes, and
``blocks.0.hook_resid_post``, which layer-1 attention can route around) we fit a
supervised dictionary (class-mean differences for IO name, S name, order), train a TopK
SAE, and fit PCA and NMF baselines, then compare them on approximation (spliced logit
difference, mean ablation = 0, clean = 1), control (edit IO v -> v' through the dictionary;
does the model now output v'?) and interpretability (best latent per attribute value),
with the over-splitting and occlusion flags.

    python -m experiments.sae_principled.run --out runs/sae_principled [--fast]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from experiments.sae_principled import task as ioi
from hiddenlens.sae.principled import (
    MeanAdapter,
    NMFAdapter,
    PCAAdapter,
    SAEAdapter,
    SpliceTask,
    SupervisedAdapter,
    control,
    reconstruct,
    spliced_approximation,
    task_activations,
)
from hiddenlens.sae.principled_diagnostics import (
    interpretability_table,
    occlusion_flags,
    over_splitting_flags,
)
from hiddenlens.sae.principled_search import EditSearchConfig, minimal_edit_search
from hiddenlens.sae.supervised import SupervisedDictionary, occlusion

HOOKS = ("blocks.1.hook_resid_mid", "blocks.0.hook_resid_post")


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/sae_principled"))
    ap.add_argument("--fast", action="store_true", help="tiny settings (for the test)")
    ap.add_argument("--hooks", nargs="+", default=list(HOOKS), help="hook points (query pos.)")
    ap.add_argument("--steps", type=int, default=500, help="model training steps")
    ap.add_argument("--n-fit", type=int, default=4000, help="items to fit dictionaries on")
    ap.add_argument("--n-test", type=int, default=1000, help="held-out items to evaluate on")
    ap.add_argument("--d-sae", type=int, default=128)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--pca", type=int, default=15, help="PCA / NMF components")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-latents", type=int, default=16, help="largest edit set searched")
    args = ap.parse_args(argv)
    if args.fast:
        args.steps, args.n_fit, args.n_test, args.d_sae = 150, 800, 200, 64
        args.hooks = args.hooks[:1]
    return args


def _fit_dictionaries(args, hook, x, labels) -> dict:
    from hiddenlens.sae import SAEConfig, TrainConfig, train

    sae = train(
        {hook: x},  # an in-memory activation source (hiddenlens.store.as_source)
        hook,
        SAEConfig(d_in=x.shape[1], d_sae=args.d_sae, architecture="topk", k=args.k),
        TrainConfig(
            total_tokens=len(x) * (10 if args.fast else 60),
            batch_size=256,
            lr=3e-3,
            dead_tokens=len(x),
            num_threads=1,
            seed=args.seed,
        ),
    )
    return {
        "supervised": SupervisedAdapter(SupervisedDictionary().fit(x, labels)),
        f"sae_topk{args.k}": SAEAdapter(sae),
        f"pca{args.pca}": PCAAdapter(args.pca, seed=args.seed).fit(x),
        f"nmf{args.pca}": NMFAdapter(args.pca, seed=args.seed, max_iter=1000).fit(x),
        "mean_ablation": MeanAdapter().fit(x),
    }


def _tables(name, d, x, labels, sup) -> dict[str, list[dict]]:
    """Interpretability, flags and attribute signal kept for one dictionary."""
    codes = d.encode(x, labels).numpy()
    norms = getattr(d, "decoder_norms", None)
    if isinstance(d, PCAAdapter):  # signed scores: each component's two signs are latents
        codes = np.concatenate([codes, -codes], 1)
    tag = {"dictionary": name}
    return {
        "interpretability": [{**tag, **r} for r in interpretability_table(codes, labels)],
        "over_splitting": [{**tag, **r} for r in over_splitting_flags(codes, labels)],
        "occlusion": [{**tag, **r} for r in occlusion_flags(codes, labels, decoder_norms=norms)],
        "signal_kept": [{**tag, **r} for r in occlusion(x, reconstruct(d, x, labels), sup, labels)],
    }


def _edit_search(dicts, model, test: SpliceTask, x, targets, max_latents) -> list[dict]:
    """Makelov et al.'s control metric: per item, the fewest latents copied from the codes
    of its counterfactual (the same item with IO = v') for the output to become v'."""
    cf_tokens, cf_labels = ioi.counterfactual_items(test.inputs, test.labels, targets)
    x_cf = task_activations(model, SpliceTask(cf_tokens, test.hook, cf_labels, ioi.logit_diff))
    rows = []
    for name, d in dicts.items():
        if name == "mean_ablation":
            continue  # no latents to edit
        for rank_by in ("output", "distance"):
            cfg = EditSearchConfig(max_latents=max_latents, rank_by=rank_by)
            res = minimal_edit_search(d, model, test, (x_cf, cf_labels), cfg, x=x)
            rows.append({"dictionary": name, **res.summary()})
    return rows


def _evaluate(dicts, model, test: SpliceTask, x, args) -> dict:
    targets = ioi.io_targets(test.labels, seed=args.seed + 1)
    res = {"summary": [], "interpretability": [], "over_splitting": [], "occlusion": [],
           "signal_kept": []}  # fmt: skip
    for name, d in dicts.items():
        row = {"dictionary": name}
        row.update(spliced_approximation(d, model, test, x=x))
        row.update(control(d, model, test, "io", targets, x=x))
        res["summary"].append(row)
        if name != "mean_ablation":
            for key, rows in _tables(name, d, x, test.labels, dicts["supervised"].sup).items():
                res[key] += rows
    res["edit_search"] = _edit_search(dicts, model, test, x, targets, args.max_latents)
    return res


def _headline(res: dict, hook: str) -> dict[str, float]:
    out: dict = {}
    for r in res["summary"]:
        for k in ("approximation", "edit_success", "logit_diff_shift", "fvu"):
            out[f"{k}/{r['dictionary']}"] = r[k]
    for r in res["interpretability"]:
        out.setdefault(f"mean_f1/{r['dictionary']}", []).append(r["f1"])
    for r in res["edit_search"]:
        if r["rank_by"] == "output":
            for k in ("min_latents", "mean_set_size", "success_full"):
                out[f"edit_search_{k}/{r['dictionary']}"] = (
                    float("nan") if r[k] is None else r[k]
                )
    for key, flag in (("over_splitting", "over_split"), ("occlusion", "occluded")):
        for r in res[key]:
            k = f"n_{flag}/{r['dictionary']}"
            out[k] = out.get(k, 0) + r[flag]
    return {  # sae/<metric>/<dictionary>/<hook>
        f"sae/{k}/{hook}": float(np.mean(v)) if isinstance(v, list) else float(v)
        for k, v in out.items()
    }


def _report(args, results: dict, headline, info):
    from hiddenlens.report import Report

    report = Report(
        "Principled dictionary evaluation on a toy IOI task",
        config={k: str(v) for k, v in vars(args).items()},
    )
    report.add_metrics(headline)
    setup = report.add_section("Setup", text=__doc__.split("\n\n")[1])
    setup.add_metrics({f"sae/{k}": v for k, v in info.items()})
    for hook, res in results.items():
        report.add_section(
            f"{hook}: approximation and control",
            text="approximation: spliced logit difference, 0 = mean ablation, 1 = clean. "
            "edit_success: share of items with logit(v') > logit(v) after editing IO v -> v' "
            "at the hook; edit_top1: the model's top token is v'. The mean-ablation row is "
            "the floor: every item gets the same output, so its edit_success is chance-like.",
        ).add_table(res["summary"])
        _search_section(report, hook, res["edit_search"])
        for key, title in (
            ("interpretability", "best latent per attribute value"),
            ("over_splitting", "latents needed for F1 >= 0.9"),
            ("occlusion", "detector silenced by a larger latent"),
            ("signal_kept", "share of each u_{a,v} projection the reconstruction keeps"),
        ):
            report.add_section(f"{hook}: {key.replace('_', ' ')} ({title})").add_table(res[key])
    return report.write(args.out)


def _search_section(report, hook: str, rows: list[dict]) -> None:
    from hiddenlens.viz.sae import plot_edit_success

    sec = report.add_section(
        f"{hook}: minimal latent set to edit IO (Makelov et al.'s control search)",
        text="Per item, latents are copied greedily from the codes of its counterfactual "
        "(the same item with IO = v') until the model outputs v' (logit(v') > logit(v)); "
        "rank_by output: each step takes the latent that moves that logit difference most; "
        "distance: the latent that brings the reconstruction closest to the counterfactual's. "
        "min_latents: the fewest latents with which 90% of items follow v'; success_full: all "
        "differing latents copied (the dictionary's ceiling). The SAE error term is kept.",
    )
    sec.add_table([{k: v for k, v in r.items() if k != "curve"} for r in rows])
    curves = {r["dictionary"]: np.array(r["curve"]) for r in rows if r["rank_by"] == "output"}
    sec.add_figure(plot_edit_success(curves, title=f"edit success vs latents ({hook})"),
                   f"edit_search_{hook}")  # fmt: skip


def _run(args) -> tuple[dict, dict]:
    torch.manual_seed(args.seed)
    model = ioi.build_model(seed=args.seed)
    train_acc = ioi.train_model(model, args.steps, seed=args.seed)
    items = [ioi.make_items(n, seed=args.seed + s) for n, s in ((args.n_fit, 10_000),
             (args.n_test, 20_000))]  # fmt: skip
    with torch.no_grad():
        pred = model(items[1][0])[:, -1].argmax(-1).numpy()
    info = {
        "model_train_acc": train_acc,
        "model_test_acc": float((pred == items[1][1]["io"]).mean()),
    }
    results = {}
    for hook in args.hooks:
        fit, test = (SpliceTask(t, hook, lab, ioi.logit_diff, ioi.answer) for t, lab in items)
        x_fit, x_test = task_activations(model, fit), task_activations(model, test)
        dicts = _fit_dictionaries(args, hook, x_fit, fit.labels)
        results[hook] = _evaluate(dicts, model, test, x_test, args)
    return results, info


def main(argv: list[str] | None = None) -> int:
    from hiddenlens import torch_threads

    args = _args(argv)
    t0 = time.time()
    with torch_threads(1):
        results, info = _run(args)
    info["seconds"] = time.time() - t0
    headline = {"sae/model_test_acc": info["model_test_acc"]}
    for hook, res in results.items():
        headline.update(_headline(res, hook))
    args.out.mkdir(parents=True, exist_ok=True)
    from hiddenlens.report import write_json

    write_json(args.out / "principled.json", results, indent=2)
    path = _report(args, results, headline, info)
    lines = [f"model test accuracy {info['model_test_acc']:.3f} ({info['seconds']:.0f} s)"]
    for hook, res in results.items():
        lines.append(f"-- {hook} (query position)")
        lines += [
            f"{r['dictionary']:>14}: approximation {r['approximation']:.3f}  "
            f"fvu {r['fvu']:.3f}  edit_success {r['edit_success']:.3f}  "
            f"logit_diff_shift {r['logit_diff_shift']:+.2f}"
            for r in res["summary"]
        ]
        lines += [
            f"{r['dictionary']:>14}: edit search ({r['rank_by']}) min_latents "
            f"{r['min_latents']}  mean set {r['mean_set_size'] or float('nan'):.2f}  "
            f"success_full {r['success_full']:.3f}"
            for r in res["edit_search"]
        ]
    sys.stdout.write("\n".join(lines) + f"\nreport: {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
