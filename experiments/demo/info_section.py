"""Demo section: information-bottleneck estimates on MiniLM layers, with their settings.

I(T;Y) for token labels per layer by the lossy-compression route of Butakov et al. (2024):
Gaussian noise on the 384-d activations, PCA to a few dimensions, then a k-NN estimate
(Ross's variant of KSG for a discrete label). I(X;T) on a subsample by binning and by the
Kolchinsky-Tracey KDE bounds — shown with their caps, because in 384 dimensions every token
lands in its own bin and the binning estimate sits at log2 N whatever the layer does
(the pitfall Saxe et al. 2018 warn about); KDE is computed on the compressed vectors.
"""

from __future__ import annotations

import numpy as np

from hiddenlens.info import kde_mi, lossy_mutual_information, mutual_information
from hiddenlens.viz.layers import LayerCurves, plot_layer_curves, plot_layer_curves_interactive

NOISE_STD, N_COMPONENTS, K = 0.1, 4, 5


def _layer_rows(ctx, idx, sub, labels):
    rows, metrics = [], {}
    for hook in ctx.hooks:
        t = np.asarray(ctx.store.rows(hook))[idx].astype(np.float64)
        row = {"layer": hook}
        for name, y in labels.items():
            keep = _common(y)  # the k-NN estimator needs > K rows per class
            est = lossy_mutual_information(
                t[keep],
                y[keep],
                noise_std=NOISE_STD,
                n_components=N_COMPONENTS,
                estimator="ksg",
                k=K,
                seed=ctx.seed,
            )
            row[f"I(T;{name})"] = round(est.bits, 3)
            row["PCA var kept"] = round(est.extras["fidelity_t"], 3)
            metrics[f"info/lossy_ity_{name}/{hook}"] = est.bits
        b = mutual_information(t[sub], None, estimator="binning", bins=30)
        z = _pca(t[sub])
        up, lo = kde_mi(z, None, noise_var=0.1 * float(z.var(axis=0).mean()))
        row.update(
            {
                "I(X;T) binning": round(b.bits, 2),
                "cap": round(b.cap, 2),
                "I(X;T) KDE upper": round(up.bits, 2),
                "KDE lower": round(lo.bits, 2),
            }
        )
        metrics.update(
            {
                f"info/ixt_binning/{hook}": b.bits,
                f"info/ixt_kde_upper/{hook}": up.bits,
                f"info/ixt_kde_lower/{hook}": lo.bits,
            }
        )
        rows.append(row)
    return rows, metrics


def _common(y: np.ndarray) -> np.ndarray:
    """Rows whose class has more than 2K members (rare classes are dropped, and said so)."""
    counts = np.bincount(y)
    return counts[y] > 2 * K


def _pca(t):
    from hiddenlens.info import PCACompressor

    return PCACompressor(N_COMPONENTS).fit(t).transform(t)


def run(ctx) -> None:
    kind, names = ctx.token_kind()
    n_all = len(kind)
    rng = np.random.default_rng(ctx.seed)
    n = min(n_all, 800 if ctx.fast else 4000)
    idx = np.sort(rng.choice(n_all, n, replace=False))
    sub = np.arange(min(n, 256 if ctx.fast else 1024))
    labels = {
        "token_kind": kind[idx],
        "capitalised": ctx.token_labels["is_capitalised"][idx].astype(np.int64),
    }
    rows, metrics = _layer_rows(ctx, idx, sub, labels)
    dropped = {k: int((~_common(v)).sum()) for k, v in labels.items()}
    sec = ctx.report.add_section(
        "Information bottleneck",
        text=(
            f"I(T;Y): noise std {NOISE_STD} x the layer's std added to the activations, PCA to "
            f"{N_COMPONENTS} dimensions, KSG/Ross k-NN estimator (k={K}) on {n} random token rows; "
            f"token kind has {len(names)} classes ({', '.join(names)}). By data processing this targets a "
            f"lower bound on the layer's information. I(X;T) on {len(sub)} of those rows: binning with 30 "
            "equal-width bins over the layer's range (it sits at its cap log2 N: in 384 dimensions every "
            "token gets its own bin, so it cannot show compression), and KDE upper/lower bounds on the "
            "PCA-compressed vectors with noise variance 0.1 x their mean variance. Rows of classes "
            f"with <= {2 * K} members are left out of I(T;Y) (dropped rows: {dropped})."
        ),
    )
    sec.add_table(rows, caption="per layer; bits")
    series = {f"I(T;{k})": [r[f"I(T;{k})"] for r in rows] for k in labels}
    curves, title = (
        LayerCurves(ctx.hooks, series, ylabel="bits"),
        "Lossy-compression I(T;Y) by layer",
    )
    sec.add_figure(
        plot_layer_curves(curves, title=title),
        "info_ity_layers",
        interactive=plot_layer_curves_interactive(curves, title=title),
    )
    sec.add_metrics(metrics)
