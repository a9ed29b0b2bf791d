"""Principled evaluation of dictionaries on a toy IOI task (Makelov, Lange & Nanda 2024).

A 2-layer TransformerLens model (d_model 64) is trained to output the indirect object of
``A B f f S ->`` sequences. At the query position of one hook point (default
``blocks.1.hook_resid_mid``: everything the output depends on passes through it) we fit a
supervised dictionary (class-mean differences for IO name, S name, order), train a TopK
SAE, and fit PCA and NMF baselines, then compare them on approximation (spliced logit
difference, mean ablation = 0, clean = 1), control (edit IO v -> v' through the dictionary;
does the model now output v'?) and interpretability (best latent per attribute value),
with the over-splitting and occlusion flags.

    python -m experiments.sae_principled.run --out runs/sae_principled [--fast]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments.sae_principled import task as ioi
from hiddenlens.sae.principled import (
    ArrayStore,
    MeanAdapter,
    NMFAdapter,
    PCAAdapter,
    SAEAdapter,
    SpliceTask,
    SupervisedAdapter,
    control,
    spliced_approximation,
    task_activations,
)
from hiddenlens.sae.principled_diagnostics import (
    interpretability_table,
    occlusion_flags,
    over_splitting_flags,
)
from hiddenlens.sae.supervised import SupervisedDictionary


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/sae_principled"))
    ap.add_argument("--fast", action="store_true", help="tiny settings (for the test)")
    ap.add_argument("--hook", default="blocks.1.hook_resid_mid")
    ap.add_argument("--steps", type=int, default=500, help="model training steps")
    ap.add_argument("--n-fit", type=int, default=4000, help="items to fit dictionaries on")
    ap.add_argument("--n-test", type=int, default=1000, help="held-out items to evaluate on")
    ap.add_argument("--d-sae", type=int, default=128)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--pca", type=int, default=15, help="PCA / NMF components")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.fast:
        args.steps, args.n_fit, args.n_test, args.d_sae = 150, 800, 200, 64
    return args


def _fit_dictionaries(args, x, labels) -> dict:
    from hiddenlens.sae import SAEConfig, TrainConfig, train

    sae = train(
        ArrayStore({args.hook: x}),
        args.hook,
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


def _evaluate(dicts, model, test: SpliceTask, x, seed) -> dict:
    targets = ioi.io_targets(test.labels, seed=seed + 1)
    summary, interp, split, occl = [], [], [], []
    for name, d in dicts.items():
        row = {"dictionary": name}
        row.update(spliced_approximation(d, model, test, x=x))
        row.update(control(d, model, test, "io", targets, x=x))
        summary.append(row)
        if name == "mean_ablation":
            continue
        codes = d.encode(x, test.labels).numpy()
        interp += [{"dictionary": name, **r} for r in interpretability_table(codes, test.labels)]
        split += [{"dictionary": name, **r} for r in over_splitting_flags(codes, test.labels)]
        norms = getattr(d, "decoder_norms", None)
        occl += [
            {"dictionary": name, **r}
            for r in occlusion_flags(codes, test.labels, decoder_norms=norms)
        ]
    return {"summary": summary, "interpretability": interp, "over_splitting": split,
            "occlusion": occl}  # fmt: skip


def _headline(res: dict) -> dict[str, float]:
    out = {}
    for r in res["summary"]:
        for k in ("approximation", "edit_success", "logit_diff_shift", "fvu"):
            out[f"{k}/{r['dictionary']}"] = r[k]
    for r in res["interpretability"]:
        key = f"mean_f1/{r['dictionary']}"
        out.setdefault(key, []).append(r["f1"])
    for r in res["over_splitting"]:
        out[f"n_over_split/{r['dictionary']}"] = (
            out.get(f"n_over_split/{r['dictionary']}", 0) + r["over_split"]
        )
    for r in res["occlusion"]:
        out[f"n_occluded/{r['dictionary']}"] = (
            out.get(f"n_occluded/{r['dictionary']}", 0) + r["occluded"]
        )
    return {k: float(np.mean(v)) if isinstance(v, list) else float(v) for k, v in out.items()}


def _report(args, res, headline, info):
    from hiddenlens.report import Report

    report = Report(
        "Principled dictionary evaluation on a toy IOI task",
        config={k: str(v) for k, v in vars(args).items()},
    )
    report.add_metrics(headline)
    sec = report.add_section("Setup", text=__doc__.split("\n\n")[1])
    sec.add_metrics(info)
    report.add_section(
        "Approximation and control",
        text="approximation: spliced logit difference, 0 = mean ablation, 1 = clean. "
        "edit_success: share of items with logit(v') > logit(v) after editing IO v -> v' "
        "at the hook; edit_top1: the model's top token is v'. The mean-ablation row is the "
        "floor: every item gets the same output, so edit_success there is chance.",
    ).add_table(res["summary"])
    report.add_section("Interpretability (best latent per attribute value)").add_table(
        res["interpretability"]
    )
    report.add_section("Over-splitting (latents needed for F1 >= 0.9)").add_table(
        res["over_splitting"]
    )
    report.add_section("Occlusion (detector silenced by a larger latent)").add_table(
        res["occlusion"]
    )
    return report.write(args.out)


def main(argv: list[str] | None = None) -> int:
    import torch

    from hiddenlens._threads import torch_threads

    args = _args(argv)
    t0 = time.time()
    with torch_threads(1):
        torch.manual_seed(args.seed)
        model = ioi.build_model(seed=args.seed)
        train_acc = ioi.train_model(model, args.steps, seed=args.seed)
        tasks = []
        for n, seed in ((args.n_fit, args.seed + 10_000), (args.n_test, args.seed + 20_000)):
            toks, labels = ioi.make_items(n, seed=seed)
            tasks.append(SpliceTask(toks, args.hook, labels, ioi.logit_diff, ioi.answer))
        x_fit, x_test = (task_activations(model, t) for t in tasks)
        dicts = _fit_dictionaries(args, x_fit, tasks[0].labels)
        res = _evaluate(dicts, model, tasks[1], x_test, args.seed)
    with torch.no_grad():
        pred = model(tasks[1].inputs)[:, -1].argmax(-1).numpy()
    acc = float((pred == tasks[1].labels["io"]).mean())
    info = {"model_train_acc": train_acc, "model_test_acc": acc, "seconds": time.time() - t0}
    headline = {**_headline(res), "model_test_acc": acc}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "principled.json").write_text(json.dumps(res, indent=2, default=str))
    path = _report(args, res, headline, info)
    lines = [f"model test accuracy {acc:.3f} ({info['seconds']:.0f} s)"]
    for r in res["summary"]:
        lines.append(
            f"{r['dictionary']:>14}: approximation {r['approximation']:.3f}  "
            f"fvu {r['fvu']:.3f}  edit_success {r['edit_success']:.3f}  "
            f"logit_diff_shift {r['logit_diff_shift']:+.2f}"
        )
    sys.stdout.write("\n".join(lines) + f"\nreport: {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
