"""Report sections for the information-plane experiment: planes beside their diagnostics."""

from __future__ import annotations

import numpy as np

from hiddenlens.info.generalisation import GeneralisationRecord
from hiddenlens.viz.info import plot_epoch_curves, plot_gap_vs_mi, plot_information_plane
from hiddenlens.viz.style import new_grid


def _curves(hist, key, estimator="kde"):
    return {"epochs": hist.epochs, "layers": hist.layers, "values": hist.array(key, estimator)}


def _panel(hist, spec):
    """Four panels: the planes that disagree, and the diagnostic that explains them."""
    fig, axes = new_grid(1, 4, figsize=(20, 4.2))
    if spec.activation == "tanh":
        plot_information_plane(
            hist.plot_data("binning"), ax=axes[0], title="binning, 30 bins on [-1, 1]"
        )
        plot_information_plane(hist.plot_data("kde"), ax=axes[1], title="KDE upper bound")
        plot_epoch_curves(
            _curves(hist, "saturation"),
            ax=axes[2],
            ylabel="fraction |t| >= 0.95",
            title="saturation",
        )
        plot_epoch_curves(
            {"epochs": hist.epochs, "layers": hist.layers, "values": hist.array("ixt", "binning")},
            ax=axes[3],
            ylabel="I(X;T) bits (binning)",
            title="I(X;T) over training",
        )
    else:
        plot_information_plane(
            hist.plot_data("binning"), ax=axes[0], title="binning, fixed global range"
        )
        plot_information_plane(
            hist.plot_data("binning_rescaled"), ax=axes[1], title="binning, rescaled per epoch"
        )
        plot_epoch_curves(
            _curves(hist, "max_abs"), ax=axes[2], ylabel="max activation", title="max activation"
        )
        plot_information_plane(hist.plot_data("kde"), ax=axes[3], title="KDE upper bound")
    fig.suptitle(spec.name)
    return fig


def _gap_record(rec, specs):
    g = GeneralisationRecord()
    last = rec.hooks[-1]
    groups = []
    for i, s in enumerate(specs):
        est = "binning"
        h = rec.hist[i]
        for r in h.records:
            if r["layer"] == last and r["estimator"] == "kde":
                b = [
                    q
                    for q in h.records
                    if q["layer"] == last and q["estimator"] == est and q["epoch"] == r["epoch"]
                ]
                g.add(
                    f"{s.name}@{r['epoch']}",
                    train_score=r["train_acc"],
                    test_score=r["test_acc"],
                    ixt=b[0]["ixt"],
                    ity=b[0]["ity"],
                )
                groups.append(f"{s.activation}-{s.init}")
    return g, groups


def add_task_section(report, title, rec, specs, rows, args, *, epochs):
    sec = report.add_section(
        title,
        text=(
            f"{len(specs)} models trained at once; {epochs} epochs, batch 256; "
            f"I(X;T), I(T;Y) on all {len(rec.y)} inputs at {len(rec.hist[0].epochs)} log-spaced epochs. "
            f"Binning: {args.bins} bins (tanh: fixed on [-1, 1]; ReLU: [0, global max] vs [min, max] of each "
            f"epoch). KDE: Kolchinsky-Tracey upper bound, noise variance {args.noise_var}, on "
            f"{min(args.kde_rows, len(rec.y))} subsampled inputs (cap log2 of that). A fall of I(X;T) that "
            "tracks the saturation fraction (tanh) or the maximum activation (rescaled ReLU bins) is an "
            "estimator artefact of saturation/rescaling, not evidence of a compression phase."
        ),
    )
    shown = set()
    for i, s in enumerate(specs):
        key = (s.activation, s.init)
        if key not in shown:
            shown.add(key)
            sec.add_figure(
                _panel(rec.hist[i], s),
                f"plane_{title[:6]}_{s.name}".replace(" ", "_"),
                caption=f"{s.name}: planes (colour = epoch) beside the diagnostic that drives them",
            )
    sec.add_table(
        rows,
        caption="last hidden layer: fall = peak minus final I(X;T), bits; "
        "corr = Spearman after the peak",
    )
    g, groups = _gap_record(rec, specs)
    try:
        corr = g.correlation("bottleneck")
        where = title[:6].strip().replace(" ", "_")
        sec.add_metrics({f"info/gap_vs_bottleneck_{k}/{where}": v for k, v in corr.items()})
    except ValueError:
        corr = None
    fig = plot_gap_vs_mi(
        {"mi": g.column("bottleneck"), "gap": g.column("gap"), "group": groups},
        title="gap vs I(X;T|Y) = I(X;T) - I(T;Y), last hidden layer, all checkpoints",
    )
    sec.add_figure(fig, f"gap_{title[:6]}".replace(" ", "_"))
    for i, ranks in rec.rank.items():
        if ranks:
            keys = [k for k in ranks[0] if k != "epoch"]
            data = {
                "epochs": np.array([r["epoch"] for r in ranks]),
                "layers": keys,
                "values": np.array([[r[k] for k in keys] for r in ranks]),
            }
            sec.add_figure(
                plot_epoch_curves(
                    data, ylabel="mean local rank", title=f"local rank, {specs[i].name}"
                ),
                f"local_rank_{specs[i].name}",
            )
