"""Section: information-bottleneck estimates per layer, with their settings.

I(T;Y) for each label by the lossy-compression route of Butakov et al. (2024): Gaussian
noise on the activations, PCA to a few dimensions, then a k-NN estimate (Ross's variant of
KSG for a discrete label). I(X;T) on a subsample by binning and by the Kolchinsky-Tracey
KDE bounds — shown with their caps, because in hundreds of dimensions every row lands in
its own bin and the binning estimate sits at log2 N whatever the layer does (the pitfall
Saxe et al. 2018 warn about); KDE is computed on the compressed vectors.
"""

from __future__ import annotations

import numpy as np

from hiddenlens._keys import metric_key

USES_SAE = False


def _common(y: np.ndarray, k: int) -> np.ndarray:
    """Rows whose class has more than 2k members (the k-NN estimator needs > k per class)."""
    return np.bincount(y)[y] > 2 * k


def _layer_row(ctx, cfg, hook, idx, sub, labels) -> tuple[dict, dict]:
    from hiddenlens.info import PCACompressor, kde_mi, lossy_mutual_information, mutual_information

    t = ctx.rows(hook, idx).astype(np.float64)
    row, metrics = {"layer": hook}, {}
    for name, y in labels.items():
        keep = _common(y, cfg.k)
        est = lossy_mutual_information(
            t[keep], y[keep], noise_std=cfg.noise_std, n_components=cfg.n_components,
            estimator="ksg", k=cfg.k, seed=ctx.seed,
        )
        row[f"I(T;{name})"] = round(est.bits, 3)
        row["PCA var kept"] = round(est.extras["fidelity_t"], 3)
        metrics[metric_key("info", f"lossy_ity_{name}", hook)] = est.bits
    b = mutual_information(t[sub], None, estimator="binning", bins=30)
    n_comp = min(cfg.n_components, t.shape[1])
    z = PCACompressor(n_comp).fit(t[sub]).transform(t[sub])
    up, lo = kde_mi(z, None, noise_var=0.1 * float(z.var(axis=0).mean()))
    row |= {"I(X;T) binning": round(b.bits, 2), "cap": round(b.cap, 2),
            "I(X;T) KDE upper": round(up.bits, 2), "KDE lower": round(lo.bits, 2)}
    metrics |= {metric_key("info", "ixt_binning", hook): b.bits,
                # the cap beside the value, so the summary can say when it sits at log2 N
                metric_key("info", "ixt_binning_cap", hook): b.cap,
                metric_key("info", "ixt_kde_upper", hook): up.bits,
                metric_key("info", "ixt_kde_lower", hook): lo.bits}
    return row, metrics


def run(ctx, cfg, report) -> None:
    from hiddenlens.viz.layers import LayerCurves, plot_layer_curves

    vals = ctx.labels.values
    default = [k for k in ("token_kind", "is_capitalised") if k in vals] or list(ctx.cfg.data.labels)
    names = ctx.labels.pick(cfg.labels, default)
    hooks = ctx.hooks_for(cfg.hooks)
    idx = ctx.sample(cfg.rows, seed_offset=1)
    sub = np.arange(min(len(idx), cfg.ixt_rows))
    labels = {k: vals[k][idx] for k in names}
    labels = {k: y for k, y in labels.items() if _common(y, cfg.k).sum() > 2 * cfg.k}
    rows, metrics = [], {}
    for hook in hooks:
        row, m = _layer_row(ctx, cfg, hook, idx, sub, labels)
        rows.append(row)
        metrics |= m
    dropped = {k: int((~_common(v, cfg.k)).sum()) for k, v in labels.items()}
    sec = report.add_section(
        "Information bottleneck",
        text=(
            f"I(T;Y): noise std {cfg.noise_std} x the layer's std added to the activations, "
            f"PCA to {cfg.n_components} dimensions, KSG/Ross k-NN estimator (k={cfg.k}) on "
            f"{len(idx):,} random rows, for labels {', '.join(labels) or 'none'}. By data "
            "processing this targets a lower bound on the layer's information. I(X;T) on "
            f"{len(sub)} of those rows: binning with 30 equal-width bins over the layer's range "
            "(at its cap log2 N, every row has its own bin, so it cannot show compression), and "
            "KDE upper/lower bounds on the PCA-compressed vectors with noise variance 0.1 x "
            f"their mean variance. Rows of classes with <= {2 * cfg.k} members are left out of "
            f"I(T;Y) (dropped rows: {dropped})."
        ),
    )
    sec.add_table(rows, caption="per layer; bits")
    if labels:
        series = {f"I(T;{k})": [r[f"I(T;{k})"] for r in rows] for k in labels}
        sec.add_figure(plot_layer_curves(LayerCurves(hooks, series, ylabel="bits"),
                                         title="Lossy-compression I(T;Y) by layer"), "info_ity_layers")
    sec.add_metrics(metrics)
