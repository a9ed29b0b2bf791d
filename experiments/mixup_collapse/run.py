"""Mixup and neural collapse: where do last-layer features of mixed inputs go?

Fisher, Meng & Papyan, "Pushing Boundaries: Mixup's Influence on Neural Collapse" (ICLR
2024): in mixup-trained nets, last-layer features of mixed inputs of two *different* classes
are not the convex combination λ μ_a + (1 − λ) μ_b of the class means; they gather in channels
along the a/b decision boundary, while mixes of *identical* classes align with the classifier.
Here the digits recipe of ``experiments/collapse_digits`` (Linear→BatchNorm→ReLU MLP, SGD,
weight decay 5e-3) is trained with and without mixup; on the trained nets, inputs of every
class pair are mixed at λ = 0, 0.1, …, 1 and :func:`hiddenlens.collapse.mixup_geometry`
measures their penultimate features against the clean class means and the classifier.

    python -m experiments.mixup_collapse.run --out runs/mixup_collapse [--fast]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from itertools import combinations

import numpy as np
import torch

from experiments.collapse_digits.train import Recipe, load_data, train
from hiddenlens import metric_key
from hiddenlens.collapse import (
    CollapseTracker,
    accumulate,
    mix_pairs,
    mixup_geometry,
    plane_coordinates,
    stats_metrics,
)

logger = logging.getLogger("mixup_collapse")
PEN = "fc:input"
LAMS = np.linspace(0, 1, 11)
FACE = (0, 1, 2)  # the three classes of the projection figure


def features(model, x) -> np.ndarray:
    """Penultimate features [n, d] of ``x`` (the classifier's input), model in eval mode."""
    tracker = CollapseTracker(model, [PEN], x, np.zeros(len(x), dtype=int))
    return tracker.collect()[0][PEN]


def analyse(res, x_tr, y_tr, n_per: int, seed: int) -> dict:
    """Clean NC metrics and the mixed-input geometry of one trained run."""
    clean = features(res.model, torch.from_numpy(x_tr))
    stats = accumulate(clean, y_tr)
    nc = stats_metrics(stats, classifier=res.model.fc)
    pairs = list(combinations(range(10), 2)) + [(c, c) for c in range(10)]
    xm, ya, yb, lam = mix_pairs(x_tr, y_tr, pairs, LAMS, n_per=n_per, seed=seed)
    geo = mixup_geometry(
        features(res.model, torch.from_numpy(xm)), lam, ya, yb, stats, classifier=res.model.fc
    )
    face = [(a, b) for a, b in combinations(FACE, 2)]
    xf, _, _, fl = mix_pairs(x_tr, y_tr, face, np.linspace(0, 1, 21), n_per=6, seed=seed + 1)
    in_face = np.isin(y_tr, FACE)
    pts, verts = plane_coordinates(
        np.concatenate([features(res.model, torch.from_numpy(xf)), clean[in_face]]),
        stats.means[list(FACE)],
    )
    proj = {
        "points": pts[: len(fl)],
        "lam": fl,
        "vertices": verts,
        "clean": pts[len(fl) :],
        "labels": [str(c) for c in FACE],
    }
    return {"nc": nc, "geo": geo, "proj": proj}


def summarise(name: str, res, out: dict) -> dict[str, float]:
    """Report metrics of one run, keyed ``collapse/<metric>/<run>``."""
    m = dict(out["geo"].to_metrics(name))
    for k in ("nc1", "means_etf_dist", "classifier_etf_dist", "nc3"):
        m[metric_key("collapse", k, name)] = float(out["nc"][k])
    m[metric_key("collapse", "test_acc", name)] = res.test_acc
    m[metric_key("collapse", "train_error", name)] = float(res.train_error[-1])
    return m


def build_report(runs: dict, outs: dict, metrics: dict, args):
    from hiddenlens.report import Report
    from hiddenlens.viz.collapse import plot_mixup_projection, plot_nc_curves

    rep = Report("Mixup and neural collapse on digits", config=vars(args))
    sec = rep.add_section("Setup and findings", text=_setup_text(args))
    sec.add_text(_findings(metrics))
    rows = []
    for name in runs:
        row = {"run": name}
        for key, v in metrics.items():
            _, metric, where = key.split("/", 2)
            if where == name and not metric.endswith("_std"):
                sd = metrics[metric_key("collapse", f"{metric}_std", name)]
                row[metric.removeprefix("mixup_")] = f"{v:.4g} ± {sd:.2g}"
        rows.append(row)
    sec.add_table(
        rows,
        caption=f"per run, mean ± std over seeds {args.seeds}: clean NC metrics (training set) "
        "and mixed-input geometry",
    )
    curves = {n: o["geo"].curve(11) for n, o in outs.items()}
    for what, ylabel, ref in (
        ("position", "position t on the μ_b→μ_a segment", lambda lam: lam),
        ("gap", "normalised logit gap g", lambda lam: 2 * lam - 1),
    ):
        lines = {n: (c["lam"], c[what]) for n, c in curves.items()}
        lines["convex combination"] = (
            curves[next(iter(curves))]["lam"],
            ref(curves[next(iter(curves))]["lam"]),
        )
        sec.add_figure(
            plot_nc_curves(
                lines,
                logy=False,
                xlabel="λ (weight of class a)",
                ylabel=ylabel,
                title=f"mixed pairs of different classes: {what} against λ",
            ),
            f"{what}_vs_lambda",
        )
    for name, o in outs.items():
        sec.add_figure(
            plot_mixup_projection(
                o["proj"], title=f"{name}: mixes of classes {FACE} in the plane of their means"
            ),
            f"projection_{name}",
            caption="grey: clean training features; coloured: mixed inputs by λ",
        )
    sec.add_metrics(metrics)
    return rep


def _setup_text(args) -> str:
    return (
        f"scikit-learn digits, 1347 training rows; MLP with 4 Linear→BatchNorm→ReLU blocks of 256 "
        f"and a linear classifier `fc`; SGD lr 0.05 (×0.1 at 1/3 and 2/3), momentum 0.9, weight "
        f"decay 5e-3, batch 128, {args.epochs} epochs; the mixup run draws one λ ~ Beta("
        f"{args.alpha}, {args.alpha}) per batch with a random partner permutation (soft-label "
        "CE). Measured on the penultimate features (`fc:input`): clean NC metrics on the training "
        f"set; then, for all 45 class pairs (a, b) and the 10 same-class pairs, {args.n_per} random "
        "training pairs mixed at each λ in 0, 0.1, …, 1 (x = λ x_a + (1 − λ) x_b). position t = "
        "projection of the feature on the μ_b→μ_a segment (the convex-combination picture "
        "predicts t = λ); line_dist = distance to that line / ‖μ_a − μ_b‖; gap g = normalised "
        "logit gap (z_a − z_b), −1 at μ_b, +1 at μ_a, 0 on the a/b decision boundary (convex "
        "combination: g = 2λ − 1); boundary_share = share of mixes with λ in [0.2, 0.8] with "
        "|g| < 0.2 (a convex combination gives 1/3 on a uniform λ grid, features on the boundary "
        "give 1); same_class_cos = cosine of a same-class mix (h − μ_G) with its classifier row."
    )


def _findings(m: dict) -> str:
    g = lambda k, n: m[metric_key("collapse", k, n)]  # noqa: E731
    return (
        f"Boundary share: ERM {g('mixup_boundary_share', 'erm'):.2f}, mixup "
        f"{g('mixup_boundary_share', 'mixup'):.2f}; |g − (2λ − 1)|: ERM "
        f"{g('mixup_gap_err', 'erm'):.3f}, mixup {g('mixup_gap_err', 'mixup'):.3f}; |t − λ|: ERM "
        f"{g('mixup_pos_err', 'erm'):.3f}, mixup {g('mixup_pos_err', 'mixup'):.3f}; distance to "
        f"the class-mean line: ERM {g('mixup_line_dist', 'erm'):.3f}, mixup "
        f"{g('mixup_line_dist', 'mixup'):.3f}. Same-class mixes vs classifier rows (cosine): ERM "
        f"{g('mixup_same_class_cos', 'erm'):.3f}, mixup {g('mixup_same_class_cos', 'mixup'):.3f}. "
        f"Clean NC1: ERM {g('nc1', 'erm'):.3g}, mixup {g('nc1', 'mixup'):.3g}; test accuracy "
        f"ERM {g('test_acc', 'erm'):.3f}, mixup {g('test_acc', 'mixup'):.3f} (means over "
        "seeds). Figures: the first seed. " + verdict(m)
    )


def verdict(m: dict) -> str:
    """The claim's two parts, judged on the measured means."""
    g = lambda k, n: m[metric_key("collapse", k, n)]  # noqa: E731
    bs, bs_erm = g("mixup_boundary_share", "mixup"), g("mixup_boundary_share", "erm")
    off, off_erm = g("mixup_line_dist", "mixup"), g("mixup_line_dist", "erm")
    cross = bs > max(1 / 3, bs_erm) + 0.1 and off > 2 * off_erm
    same = g("mixup_same_class_cos", "mixup") >= g("mixup_same_class_cos", "erm")
    return (
        "Different-class mixes: "
        + ("reproduced" if cross else "not reproduced")
        + " (criterion: boundary share > max(1/3, ERM's) + 0.1 and distance to the class-mean "
        "line > 2× ERM's: the features leave the segment between the class means and gather at "
        "the decision boundary). Same-class mixes aligned with the classifier at least as well "
        "as ERM's features: "
        + ("yes" if same else "no")
        + f" (cosine {g('mixup_same_class_cos', 'mixup'):.3f} vs ERM "
        f"{g('mixup_same_class_cos', 'erm'):.3f})."
    )


def aggregate(per_seed: dict[str, float], names) -> dict[str, float]:
    """Mean and std over seeds: ``collapse/<metric>/<run>`` and ``collapse/<metric>_std/<run>``
    from the per-seed keys ``collapse/<metric>/<run>/seed=<s>``."""
    out = {}
    for name in names:
        by_metric: dict[str, list[float]] = {}
        for key, v in per_seed.items():
            _, metric, where = key.split("/", 2)
            if where.split("/", 1)[0] == name:
                by_metric.setdefault(metric, []).append(v)
        for metric, vals in by_metric.items():
            out[metric_key("collapse", metric, name)] = float(np.mean(vals))
            out[metric_key("collapse", f"{metric}_std", name)] = float(np.std(vals))
    return out


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/mixup_collapse")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=1.0, help="mixup Beta(α, α)")
    ap.add_argument("--n-per", type=int, default=6, help="mixed examples per pair and λ")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--fast", action="store_true", help="8 epochs, 2 mixes per pair and λ, 1 seed")
    args = ap.parse_args(argv)
    if args.fast:
        args.epochs, args.n_per, args.seeds = 8, 2, args.seeds[:1]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    runs, outs, per_seed = {}, {}, {}
    for seed in args.seeds:
        data = load_data(seed)
        base = Recipe("erm", epochs=args.epochs, seed=seed)
        for r in (base, dataclasses.replace(base, name="mixup", mixup_alpha=args.alpha)):
            res = train(r, data, track_every=args.epochs)
            out = analyse(res, data[0], data[1], args.n_per, seed)
            per_seed.update(summarise(f"{r.name}/seed={seed}", res, out))
            if seed == args.seeds[0]:  # figures from the first seed
                runs[r.name], outs[r.name] = res, out
            logger.info("%s seed %d: trained in %.1f s", r.name, seed, res.seconds)
    metrics = aggregate(per_seed, runs)
    metrics[metric_key("run", "seconds", "total")] = time.perf_counter() - t0
    rep = build_report(runs, outs, metrics, args)
    rep.add_metrics({**metrics, **per_seed})
    path = rep.write(args.out)
    cols = (
        "boundary_share",
        "gap_err",
        "pos_err",
        "line_dist",
        "same_class_cos",
        "nc1",
        "test_acc",
    )
    print(f"mean ± std over seeds {args.seeds}")
    print(f"{'run':6s} " + " ".join(f"{c:>17s}" for c in cols))
    for name in runs:
        cells = []
        for c in cols:
            metric = c if c in ("nc1", "test_acc") else f"mixup_{c}"
            mu = metrics[metric_key("collapse", metric, name)]
            sd = metrics[metric_key("collapse", f"{metric}_std", name)]
            cells.append(f"{mu:.4f}±{sd:.4f}")
        print(f"{name:6s} " + " ".join(f"{c:>17s}" for c in cells))
    print(verdict(metrics))
    print(f"report: {path}  ({time.perf_counter() - t0:.0f} s)")
    return metrics


if __name__ == "__main__":
    main()
