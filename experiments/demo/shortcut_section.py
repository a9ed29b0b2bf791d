"""Demo section: shortcut analysis.

1. Feature-Sieve profile (Tiwari & Shenoy, ICML 2023) on MiniLM: how decodable each token
   label is from every layer; a label already readable at the first layer is flagged as a
   simple feature a downstream classifier could take as a shortcut.
2. A small controlled run of Hermann et al. ("On the Foundations of Shortcut Learning"):
   linear and one-hidden-layer ReLU models on two-feature 12x12 images, scored against the
   exact Bayes classifier; group metrics, opposing-signal detection on the ReLU model's
   per-example losses, and DFR last-layer retraining as a mitigation.
"""

from __future__ import annotations

import numpy as np

LABELS = ("is_digit", "is_punct", "is_capitalised", "is_continuation")


def _sieve(ctx, rows: int) -> tuple[dict, dict]:
    from hiddenlens.shortcut import early_decodability

    rng = np.random.default_rng(ctx.seed)
    n = len(ctx.store)
    idx = np.sort(rng.choice(n, size=min(rows, n), replace=False))
    acts = {h: np.asarray(ctx.store.rows(h)[idx], dtype=np.float32) for h in ctx.hooks}
    names = LABELS[1:3] if ctx.fast else LABELS
    labels = {k: np.asarray(ctx.token_labels[k])[idx].astype(np.int64) for k in names}
    # a contextual label: is the token in the first 8 positions of its sequence?
    labels["early_position"] = (np.asarray(ctx.token_labels["position"])[idx] < 8).astype(int)
    out, profiles = {}, {}
    for name, lab in labels.items():
        if len(np.unique(lab)) < 2:
            continue
        res = early_decodability(acts, lab, max_rows=rows, seed=ctx.seed)
        profiles[name] = [res[f"shortcut/decodability/{h}"] for h in ctx.hooks]
        out[f"shortcut/sieve_flag/{name}"] = res["shortcut/sieve_flag"]
        out[f"shortcut/sieve_early_ratio/{name}"] = res["shortcut/sieve_early_ratio"]
    return out, profiles


def _synthetic(ctx, steps: int, seeds: int) -> tuple[dict, list[dict]]:
    import torch

    from hiddenlens.shortcut import (
        DFR,
        OpposingSignals,
        TwoFeatureConfig,
        bias_from_predictions,
        group_metrics,
        make_dataset,
    )
    from hiddenlens.shortcut.train import BatchedNet, predict_batched, train_batched

    cfg = TwoFeatureConfig(core_predictivity=1.0, shortcut_predictivity=0.9, shortcut_size=4)
    dsets = [make_dataset(cfg, 1000, 1000, seed=ctx.seed + k) for k in range(seeds)]
    x = np.stack([d.train.x for d in dsets])
    y = np.stack([d.train.y for d in dsets])
    metrics, rows = {}, []
    torch.manual_seed(ctx.seed)
    for arch in ("linear", "relu"):
        net = BatchedNet(seeds, cfg.input_shape, arch, hidden=32, seed=ctx.seed)
        res = train_batched(
            net,
            x,
            y,
            steps=steps,
            lr=0.05,
            weight_decay=1e-2,
            track_model=0 if arch == "relu" else None,
        )
        names = list(dsets[0].splits)
        pred = {s: predict_batched(net, np.stack([d.splits[s].x for d in dsets])) for s in names}
        per = [
            bias_from_predictions(d, {s: pred[s][i] for s in names}) for i, d in enumerate(dsets)
        ]
        iid = dsets[0].splits["iid"]
        grp = group_metrics(iid.y, pred["iid"][0], iid.groups)
        metrics[f"shortcut/bias/{arch}"] = float(np.mean([p["shortcut/bias"] for p in per]))
        metrics[f"shortcut/worst_group_acc/{arch}"] = grp["shortcut/worst_group_acc"]
        rows.append(
            {
                "model": arch,
                "bias": round(metrics[f"shortcut/bias/{arch}"], 3),
                "max_bias": round(float(np.mean([p["shortcut/max_bias"] for p in per])), 3),
                "acc_conflict": round(float(np.mean([p["shortcut/accuracy/conflict"] for p in per])), 3),
                "acc_iid": round(float(np.mean([p["shortcut/accuracy/iid"] for p in per])), 3),
                "worst_group_acc": round(grp["shortcut/worst_group_acc"], 3),
                "loss_rel_change_last10%": f"{res.converged_rel_change.max():.1e}",
            }
        )
        if arch == "relu":
            metrics |= _dfr_and_opposing(net, dsets[0], res, seeds, DFR, OpposingSignals, grp)
    return metrics, rows


def _dfr_and_opposing(net, ds, res, seeds, dfr_cls, opp_cls, erm_groups) -> dict:
    import torch

    from hiddenlens.shortcut import group_metrics

    def feats(split):
        xs = np.zeros((seeds, *split.x.shape), dtype=np.float32)
        xs[0] = split.x
        with torch.no_grad():
            return net.features(torch.from_numpy(xs))[0].numpy()

    # DFR retrains the last layer on group-balanced held-out data (here the shortcut_random
    # split, where shortcut and label are independent), then is tested on iid data
    held, iid = ds.splits["shortcut_random"], ds.splits["iid"]
    dfr = dfr_cls(n_repeats=5).fit(feats(held), held.y, held.groups)
    g = group_metrics(iid.y, dfr.predict(feats(iid)), iid.groups)
    opp = opp_cls(top_k=20).fit(res.example_losses, groups=ds.train.groups)
    return {
        "shortcut/dfr_worst_group_acc": g["shortcut/worst_group_acc"],
        "shortcut/erm_worst_group_acc": erm_groups["shortcut/worst_group_acc"],
        **opp.to_metrics(),
    }


def run(ctx) -> None:
    import torch

    from hiddenlens.viz.layers import LayerCurves, plot_layer_curves, plot_layer_curves_interactive

    rows = 600 if ctx.fast else 2500
    sieve, profiles = _sieve(ctx, rows)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batched models: a second thread only adds sync overhead
    try:
        synth, table = _synthetic(ctx, steps=30 if ctx.fast else 300, seeds=2)
    finally:
        torch.set_num_threads(threads)
    sec = ctx.report.add_section("Shortcuts: simple features and shortcut bias")
    flagged = [k.rsplit("/", 1)[1] for k, v in sieve.items() if "/sieve_flag/" in k and v]
    sec.add_text(
        "Feature Sieve view: a linear probe's held-out accuracy for each token label at every "
        f"MiniLM layer ({rows:,} token rows), rescaled so chance is 0 and perfect is 1. A label "
        "that the first layer already reads at >= 90% of its best decodability is flagged as "
        "a simple feature that a model trained on it could use as a shortcut. Flagged: "
        f"{', '.join(flagged) if flagged else 'none'}."
    )
    curves = LayerCurves(
        ctx.hooks, profiles, ylabel="decodability above chance", ylim=(-0.02, 1.02)
    )
    title = "label decodability by layer"
    sec.add_figure(
        plot_layer_curves(curves, title=title),
        "shortcut_sieve",
        interactive=plot_layer_curves_interactive(curves, title=title),
    )
    sec.add_text(
        "Controlled run (Hermann et al. 2024): 12x12 images, core = 2x2 patch (predictivity "
        "1.0), shortcut = 4x4 patch (predictivity 0.9), 1,000 training items, 2 seeds. Bias "
        "= shortcut reliance on cue-conflict items minus that of the exact Bayes classifier "
        "(0 = ideal observer). Worst-group accuracy on iid data (groups = label x shortcut "
        "class) for ERM and after DFR last-layer retraining; opposing signals = the most "
        "anti-correlated pair of groups in the ReLU model's per-example loss changes. See "
        "experiments/shortcut_foundations for the full sweep."
    )
    sec.add_table(table, caption="synthetic two-feature run")
    sec.add_metrics(sieve | synth)
    ctx.artifacts["shortcut"] = sieve | synth
