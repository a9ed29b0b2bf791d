"""The two sweeps of the shortcut-foundations experiment (see run.py)."""

from __future__ import annotations

import numpy as np

from hiddenlens.shortcut import TwoFeatureConfig, bias_from_predictions, make_dataset
from hiddenlens.shortcut.train import BatchedNet, predict_batched, train_batched

LR = {
    "adam": {"linear": 2e-2, "relu": 5e-3, "tanh": 5e-3, "cnn": 1e-2},
    "sgd": {"linear": 0.05, "relu": 0.05, "tanh": 0.05, "cnn": 0.05},
}
N_TRAIN, N_TEST = 1000, 1000


def ci95(x) -> tuple[float, float, float]:
    """Mean and two-sided 95% Student-t interval of the values in x."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    m = float(x.mean())
    if len(x) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return m, m - half, m + half


def eval_steps(steps: int, n: int = 16) -> list[int]:
    """Step 0 and ~n log-spaced steps below ``steps`` (the final state is added by training)."""
    pts = np.unique(np.round(np.logspace(0, np.log10(max(steps, 2)), n)).astype(int))
    return [0] + [int(s) for s in pts if 0 < s < steps]


def _train(arch, datasets, args, curve_idx, steps=None, weight_decay=None):
    """Train one batched net over ``datasets``; returns final metrics per model, the bias
    of the ``curve_idx`` models at each eval step, the loss history and convergence."""
    shape = datasets[0].config.input_shape
    net = BatchedNet(len(datasets), shape, arch, hidden=args.hidden, channels=8, seed=1)
    x = np.stack([d.train.x for d in datasets])
    y = np.stack([d.train.y for d in datasets])
    xc = np.stack([datasets[i].splits["conflict"].x for i in curve_idx])
    sub = curve_idx

    def ev(model, step):
        # the whole batch runs forward; only the tracked models are scored
        full = np.zeros((len(datasets), *xc.shape[1:]), dtype=np.float32)
        full[sub] = xc
        pred = predict_batched(model, full)
        return [bias_from_predictions(datasets[i], {"conflict": pred[i]})["shortcut/bias"] for i in sub]

    steps = args.steps if steps is None else steps
    wd = args.weight_decay if weight_decay is None else weight_decay
    res = train_batched(
        net,
        x,
        y,
        steps=steps,
        lr=LR[args.optimizer][arch],
        weight_decay=wd,
        optimizer=args.optimizer,
        eval_at=eval_steps(steps) if len(sub) else (),
        eval_fn=ev if len(sub) else None,
    )
    finals = []
    names = list(datasets[0].splits) + ["train"]
    preds = {
        s: predict_batched(
            net, np.stack([(d.train if s == "train" else d.splits[s]).x for d in datasets])
        )
        for s in names
    }
    for i, d in enumerate(datasets):
        m = bias_from_predictions(d, {s: preds[s][i] for s in names})
        m["final_loss"] = float(res.loss[-1, i])
        m["rel_change"] = float(res.converged_rel_change[i])
        finals.append(m)
    curves = np.asarray(res.evals) if res.evals else np.zeros((0, 0))  # [n_evals, len(sub)]
    return finals, curves, res


def _table_row(stat, finals) -> dict:
    """Seed-averaged summary of one (model, setting) cell."""

    def mean(key):
        return round(float(np.mean([f[key] for f in finals])), 3)

    return {
        "bias": f"{stat[0]:.3f} [{stat[1]:.3f}, {stat[2]:.3f}]",
        "max_bias": mean("shortcut/max_bias"),
        "acc_conflict": mean("shortcut/accuracy/conflict"),
        "bayes_acc_conflict": mean("shortcut/bayes_accuracy/conflict"),
        "acc_iid": mean("shortcut/accuracy/iid"),
        "bayes_acc_iid": mean("shortcut/bayes_accuracy/iid"),
        "train_loss": round(float(np.mean([f["final_loss"] for f in finals])), 4),
        "loss_rel_change_last10%": f"{max(f['rel_change'] for f in finals):.1e}",
    }


def image_sweep(args, sizes, preds) -> dict:
    """Part A: every architecture on the line p_s = max(preds); linear and ReLU on the grid."""
    line_p = max(preds)
    curve_s = 4 if 4 in sizes else sizes[-1]
    cache: dict = {}

    def data(p, s, seed):
        if (p, s, seed) not in cache:
            cfg = TwoFeatureConfig(core_predictivity=1.0, shortcut_predictivity=p, shortcut_size=s)
            cache[(p, s, seed)] = make_dataset(cfg, N_TRAIN, N_TEST, seed=seed)
        return cache[(p, s, seed)]

    out = {"line": {}, "heatmaps": {}, "curves": {}, "table": [], "metrics": {}}
    seeds = range(args.seeds)
    for arch in ("linear", "relu", "tanh", "cnn"):
        grid_ps = preds if arch in ("linear", "relu") else [line_p]
        keys = [(p, s, k) for p in grid_ps for s in sizes for k in seeds]
        dsets = [data(*key) for key in keys]
        curve_idx = [i for i, (p, s, _) in enumerate(keys) if p == line_p and s == curve_s]
        finals, curves, res = _train(arch, dsets, args, curve_idx)
        b = np.array([f["shortcut/bias"] for f in finals]).reshape(len(grid_ps), len(sizes), len(seeds))
        row = b[grid_ps.index(line_p)]  # [sizes, seeds]
        stats = [ci95(r) for r in row]
        out["line"][arch] = {
            "mean": np.array([s[0] for s in stats]),
            "lo": np.array([s[1] for s in stats]),
            "hi": np.array([s[2] for s in stats]),
            "per_seed": row,
        }
        if len(grid_ps) > 1:
            out["heatmaps"][arch] = b.mean(axis=2)
        out["curve_steps"] = eval_steps(args.steps) + [args.steps]
        cs = [ci95(c) for c in curves]
        out["curves"][arch] = tuple(np.array([c[j] for c in cs]) for j in range(3))
        conv = max(f["rel_change"] for f in finals)
        out["metrics"][f"shortcut/converged_rel_change_max/{arch}"] = conv
        out["metrics"][f"run/seconds/train_{arch}"] = res.seconds
        for j, s in enumerate(sizes):
            sel = [f for f, key in zip(finals, keys) if key[0] == line_p and key[1] == s]
            out["metrics"][f"shortcut/bias/{arch}_s{s}"] = stats[j][0]
            out["table"].append({"model": arch, "s": s, **_table_row(stats[j], sel)})
    return out


def best_linear_bias(cfg, seeds, n_pop: int = 200_000) -> float:
    """Bias of the population-optimal *linear* rule: a logistic fit on n_pop items of the
    two sufficient statistics, scored on the same conflict sets as the trained models.
    The Bayes rule is not linear here (the shortcut's evidence saturates at
    log(p / (1 - p))), so this is what a linear readout can reach at best."""
    from sklearn.linear_model import LogisticRegression

    from hiddenlens.shortcut.data import feature_means

    pop = make_dataset(cfg, n_pop, 1, seed=999, splits=("conflict",))
    clf = LogisticRegression(C=1e6).fit(np.stack(feature_means(cfg, pop.train.x), 1), pop.train.y)
    out = []
    for k in seeds:
        ds = make_dataset(cfg, 1, N_TEST, seed=100 + k, splits=("conflict",))
        xc = np.stack(feature_means(cfg, ds.splits["conflict"].x), 1)
        out.append(bias_from_predictions(ds, {"conflict": clf.predict(xc)})["shortcut/bias"])
    return float(np.mean(out))


def vector_sweep(args, amps) -> dict:
    """Part B: Gaussian latents, 16-d vectors, shortcut amplitude (availability) swept."""
    seeds = range(args.seeds)
    keys = [(a, k) for a in amps for k in seeds]
    dsets = [
        make_dataset(
            TwoFeatureConfig(
                kind="vector",
                latent="gaussian",
                dim=16,
                core_size=1,
                shortcut_size=1,
                core_predictivity=1.0,
                shortcut_predictivity=0.9,
                shortcut_amplitude=a,
            ),
            N_TRAIN,
            N_TEST,
            seed=100 + k,
        )
        for a, k in keys
    ]
    steps = eval_steps(args.vector_steps) + [args.vector_steps]
    early = [i for i, s in enumerate(steps) if 0 < s <= max(1, args.vector_steps // 10)]
    best: dict = {}
    out = {"steps": steps, "curves": {}, "final": {}, "early_peak": {}, "table": [], "metrics": {}}
    out["best_linear"] = best
    for arch in ("linear", "relu", "tanh"):
        finals, curves, _ = _train(
            arch,
            dsets,
            args,
            list(range(len(dsets))),
            steps=args.vector_steps,
            weight_decay=args.vector_weight_decay,
        )
        curves = curves.reshape(len(steps), len(amps), len(seeds))
        out["final"][arch], out["early_peak"][arch] = [], []
        for j, a in enumerate(amps):
            if a not in best:
                best[a] = best_linear_bias(dsets[j * len(seeds)].config, seeds, args.pop_items)
                out["metrics"][f"shortcut/vector_best_linear_bias/amp{a:g}"] = best[a]
            fin = ci95(curves[-1, j])
            peak = float(curves[early, j].mean(axis=1).max())
            out["final"][arch].append(fin[0])
            out["early_peak"][arch].append(peak)
            conv = max(f["rel_change"] for f, key in zip(finals, keys) if key[0] == a)
            out["table"].append(
                {
                    "model": arch,
                    "shortcut_amplitude": a,
                    "final_bias": f"{fin[0]:.3f} [{fin[1]:.3f}, {fin[2]:.3f}]",
                    "early_peak_bias": round(peak, 3),
                    "best_linear_rule_bias": round(best[a], 3),
                    "loss_rel_change_last10%": f"{conv:.1e}",
                }
            )
            out["metrics"][f"shortcut/vector_final_bias/{arch}_amp{a:g}"] = fin[0]
            out["metrics"][f"shortcut/vector_early_peak_bias/{arch}_amp{a:g}"] = peak
        cs = [ci95(c) for c in curves[:, -1]]
        out["curves"][arch] = tuple(np.array([c[j] for c in cs]) for j in range(3))
    return out
