"""Section: shortcut analysis.

1. Feature-Sieve profile (Tiwari & Shenoy, ICML 2023): how decodable each label is from
   every layer; a label already readable at the first layer is flagged as a simple feature
   a downstream classifier could take as a shortcut.
2. Optionally (``synthetic = true``) a small controlled run of Hermann et al. ("On the
   Foundations of Shortcut Learning"): linear and one-hidden-layer ReLU models on
   two-feature 12x12 images, scored against the exact Bayes classifier; group metrics,
   opposing-signal detection and DFR last-layer retraining. It does not use the model.
"""

from __future__ import annotations

import numpy as np

from hiddenlens._keys import metric_key
from hiddenlens.analyze.context import first_of

USES_SAE = False
DEFAULT_TEXT_LABELS = ("is_digit", "is_punct", "is_capitalised", "is_continuation", "early_position")


def _m(metrics: dict, name: str) -> float:
    """A shortcut metric by its plain or its ``shortcut/`` name."""
    return first_of(metrics, name, f"shortcut/{name}")


def _sieve(ctx, cfg, names, hooks) -> tuple[dict, dict]:
    from hiddenlens.shortcut import early_decodability

    idx = ctx.sample(cfg.rows, seed_offset=2)
    acts = {h: ctx.rows(h, idx) for h in hooks}
    out, profiles = {}, {}
    for name in names:
        lab = ctx.labels.values[name][idx]
        if len(np.unique(lab)) < 2:
            continue
        res = early_decodability(acts, lab, max_rows=cfg.rows, seed=ctx.seed)
        profiles[name] = [
            first_of(res, f"decodability/{h}", f"shortcut/decodability/{h}") for h in hooks
        ]
        out[metric_key("shortcut", f"sieve_flag_{name}")] = first_of(
            res, "sieve/flag", "shortcut/sieve_flag")
        out[metric_key("shortcut", f"sieve_early_ratio_{name}")] = first_of(
            res, "sieve/early_ratio", "shortcut/sieve_early_ratio")
    return out, profiles


def _synthetic(seed: int, steps: int, seeds: int) -> tuple[dict, list[dict]]:
    import torch

    from hiddenlens.shortcut import (
        TwoFeatureConfig,
        bias_from_predictions,
        group_metrics,
        make_dataset,
    )
    from hiddenlens.shortcut.train import BatchedNet, predict_batched, train_batched

    cfg = TwoFeatureConfig(core_predictivity=1.0, shortcut_predictivity=0.9, shortcut_size=4)
    dsets = [make_dataset(cfg, 1000, 1000, seed=seed + k) for k in range(seeds)]
    x = np.stack([d.train.x for d in dsets])
    y = np.stack([d.train.y for d in dsets])
    metrics, rows = {}, []
    torch.manual_seed(seed)
    for arch in ("linear", "relu"):
        net = BatchedNet(seeds, cfg.input_shape, arch, hidden=32, seed=seed)
        res = train_batched(net, x, y, steps=steps, lr=0.05, weight_decay=1e-2,
                            track_model=0 if arch == "relu" else None)
        names = list(dsets[0].splits)
        pred = {s: predict_batched(net, np.stack([d.splits[s].x for d in dsets])) for s in names}
        per = [bias_from_predictions(d, {s: pred[s][i] for s in names}) for i, d in enumerate(dsets)]
        iid = dsets[0].splits["iid"]
        grp = group_metrics(iid.y, pred["iid"][0], iid.groups)
        metrics[metric_key("shortcut", "bias", arch)] = float(np.mean([_m(p, "bias") for p in per]))
        metrics[metric_key("shortcut", "worst_group_acc", arch)] = _m(grp, "worst_group_acc")
        rows.append({
            "model": arch,
            "bias": round(float(np.mean([_m(p, "bias") for p in per])), 3),
            "max_bias": round(float(np.mean([_m(p, "max_bias") for p in per])), 3),
            "acc_conflict": round(float(np.mean([_m(p, "accuracy/conflict") for p in per])), 3),
            "acc_iid": round(float(np.mean([_m(p, "accuracy/iid") for p in per])), 3),
            "worst_group_acc": round(_m(grp, "worst_group_acc"), 3),
            "loss_rel_change_last10%": f"{res.converged_rel_change.max():.1e}",
        })
        if arch == "relu":
            metrics |= _dfr_and_opposing(net, dsets[0], res, seeds, grp)
    return metrics, rows


def _dfr_and_opposing(net, ds, res, seeds, erm_groups) -> dict:
    import torch

    from hiddenlens.shortcut import DFR, OpposingSignals, group_metrics

    def feats(split):
        xs = np.zeros((seeds, *split.x.shape), dtype=np.float32)
        xs[0] = split.x
        with torch.no_grad():
            return net.features(torch.from_numpy(xs))[0].numpy()

    # DFR retrains the last layer on group-balanced held-out data (the shortcut_random split,
    # where shortcut and label are independent), then is tested on iid data
    held, iid = ds.splits["shortcut_random"], ds.splits["iid"]
    dfr = DFR(n_repeats=5).fit(feats(held), held.y, held.groups)
    g = group_metrics(iid.y, dfr.predict(feats(iid)), iid.groups)
    opp = OpposingSignals(top_k=20).fit(res.example_losses, groups=ds.train.groups)
    out = {metric_key("shortcut", "worst_group_acc", "dfr"): _m(g, "worst_group_acc"),
           metric_key("shortcut", "worst_group_acc", "erm"): _m(erm_groups, "worst_group_acc")}
    for k, v in opp.to_metrics().items():
        out[k if k.startswith("shortcut/") else metric_key("shortcut", k.replace("/", "_"))] = v
    return out


def run(ctx, cfg, report) -> None:
    import torch

    from hiddenlens.viz.layers import LayerCurves, plot_layer_curves

    vals = ctx.labels.values
    default = [k for k in DEFAULT_TEXT_LABELS if k in vals] + list(ctx.cfg.data.labels)
    names = ctx.labels.pick(cfg.labels, default)
    hooks = ctx.hooks_for(cfg.hooks)
    sieve, profiles = _sieve(ctx, cfg, names, hooks)
    sec = report.add_section("Shortcuts: simple features and shortcut bias")
    flagged = [k.split("sieve_flag_", 1)[1] for k, v in sieve.items() if "sieve_flag_" in k and v]
    sec.add_text(
        "Feature Sieve view: a linear probe's held-out accuracy for each label at every layer "
        f"({min(cfg.rows, len(ctx.store)):,} rows), rescaled so chance is 0 and perfect is 1. "
        "A label that the first layer already reads at >= 90% of its best decodability is "
        "flagged as a simple feature that a model trained on it could use as a shortcut. "
        f"Flagged: {', '.join(flagged) if flagged else 'none'}."
    )
    if profiles:
        curves = LayerCurves(hooks, profiles, ylabel="decodability above chance", ylim=(-0.02, 1.02))
        sec.add_figure(plot_layer_curves(curves, title="label decodability by layer"),
                       "shortcut_sieve")
    metrics = dict(sieve)
    if cfg.synthetic:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny batched models: a second thread only adds sync overhead
        try:
            synth, table = _synthetic(ctx.seed, cfg.steps, cfg.seeds)
        finally:
            torch.set_num_threads(threads)
        sec.add_text(
            "Controlled run (Hermann et al. 2024), independent of the model above: 12x12 "
            "images, core = 2x2 patch (predictivity 1.0), shortcut = 4x4 patch (predictivity "
            f"0.9), 1,000 training items, {cfg.seeds} seeds. Bias = shortcut reliance on "
            "cue-conflict items minus that of the exact Bayes classifier (0 = ideal observer). "
            "Worst-group accuracy on iid data for ERM and after DFR last-layer retraining; "
            "opposing signals = the most anti-correlated pair of groups in the ReLU model's "
            "per-example loss changes."
        )
        sec.add_table(table, caption="synthetic two-feature run")
        metrics |= synth
    sec.add_metrics(metrics)
