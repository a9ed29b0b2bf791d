"""Information plane of Shwartz-Ziv & Tishby (2017) and the critique of Saxe et al. (2018).

12-bit icosahedron task (hiddenlens.info.tasks), network 12-10-7-5-4-3-2, tanh and ReLU,
softmax output, Adam lr 4e-4, batch 256, Saxe et al.'s init (truncated normal std
1/sqrt(fan_out), zero bias) and PyTorch's default init, several seeds, all trained at once as
one batched model. Planes by binning (tanh: 30 bins on [-1, 1]; ReLU: bins over a fixed
global range vs bins rescaled to each epoch's maximum) and by KDE, with the saturation
fraction and the maximum activation next to them, plus local rank and generalisation gap vs
I(X;T|Y). Then the same on scikit-learn digits.

    python experiments/info_plane/run.py --epochs 5000 --seeds 5   # the full run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from analysis import Recorder, after_peak_corr, fall  # noqa: E402
from batched import BatchedMLP, ModelSpec, log_epochs, train_batched  # noqa: E402
from figures import add_task_section  # noqa: E402

from hiddenlens.info.tasks import szt_12bit_task  # noqa: E402
from hiddenlens.report import Report, write_json  # noqa: E402


def run_task(name, x, y, dims, specs, args, *, epochs, lr, train_frac, rank_models=()):
    """Train ``specs`` as one batched model on (x, y); return the Recorder."""
    n = len(y)
    n_train = int(round(train_frac * n))
    train_idx = torch.stack(
        [
            torch.randperm(n, generator=torch.Generator().manual_seed(s.seed))[:n_train]
            for s in specs
        ]
    )
    model = BatchedMLP(dims, specs)
    rec = Recorder(
        model,
        specs,
        x,
        y,
        train_idx,
        bins=args.bins,
        noise_var=args.noise_var,
        kde_rows=args.kde_rows,
        rank_models=rank_models,
    )
    t0 = time.time()
    train_batched(
        model,
        x,
        y,
        train_idx,
        epochs=epochs,
        record_epochs=set(log_epochs(epochs, args.n_record)),
        on_record=rec,
        lr=lr,
        batch_size=256,
        seed=args.seed,
    )
    rec.finish()
    print(f"[{name}] {len(specs)} models, {epochs} epochs: {time.time() - t0:.0f} s")
    return rec


def headline(name, rec, specs, last):
    """Per-model falls of the last hidden layer's I(X;T) and what they track."""
    rows = []
    for i, s in enumerate(specs):
        h = rec.hist[i]
        acc = [r["test_acc"] for r in h.records if r["estimator"] == "kde"]
        row = {"task": name, "model": s.name, "final_test_acc": acc[-1]}
        est = "binning" if s.activation == "tanh" else "binning_rescaled"
        ixt = h.array("ixt", est)[:, h.layers.index(last)]
        row["peak_epoch"] = int(h.epochs[int(np.nanargmax(ixt))])
        if s.activation == "tanh":
            row["fall_binning"] = fall(h, "binning", last)
            row["corr_with_saturation"] = after_peak_corr(h, "binning", last, "saturation")
        else:
            row["fall_fixed_global_bins"] = fall(h, "binning", last)
            row["fall_rescaled_bins"] = fall(h, "binning_rescaled", last)
            row["corr_rescaled_with_max_act"] = after_peak_corr(
                h, "binning_rescaled", last, "max_abs"
            )
        row["fall_kde"] = fall(h, "kde", last)
        rows.append({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
    return rows


def print_rows(rows):
    for r in rows:
        print("  " + ", ".join(f"{k}={v}" for k, v in r.items()))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--epochs", type=int, default=5000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--n-record", type=int, default=30, help="log-spaced epochs recorded")
    p.add_argument("--bins", type=int, default=30)
    p.add_argument("--noise-var", type=float, default=0.1, help="KDE noise variance")
    p.add_argument("--kde-rows", type=int, default=1024, help="rows subsampled for KDE")
    p.add_argument("--digits-epochs", type=int, default=500)
    p.add_argument("--digits-seeds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/info_plane")
    return p.parse_args(argv)


def run_szt(args, report) -> list[dict]:
    """The 12-bit task: tanh/ReLU x Saxe/default init x seeds, one batched model."""
    x, y = szt_12bit_task()
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    specs = [
        ModelSpec(a, i, s)
        for a in ("tanh", "relu")
        for i in ("saxe", "default")
        for s in range(args.seeds)
    ]
    rank_models = [k for k, s in enumerate(specs) if s.seed == 0]
    dims = [12, 10, 7, 5, 4, 3, 2]
    rec = run_task(
        "12-bit",
        xt,
        yt,
        dims,
        specs,
        args,
        epochs=args.epochs,
        lr=4e-4,
        train_frac=0.8,
        rank_models=rank_models,
    )
    rows = headline("12-bit", rec, specs, rec.hooks[-1])
    print("12-bit task, last hidden layer (width 3):")
    print_rows(rows)
    title = "12-bit task (Shwartz-Ziv & Tishby)"
    add_task_section(report, title, rec, specs, rows, args, epochs=args.epochs)
    return rows, histories(rec, specs)


def run_digits(args, report) -> list[dict]:
    """scikit-learn digits (8x8, 10 classes), 64-32-16-8-10, tanh and ReLU, Saxe init."""
    from sklearn.datasets import load_digits

    d = load_digits()
    dx, dy = torch.tensor(d.data / 16.0, dtype=torch.float32), torch.tensor(d.target)
    specs = [ModelSpec(a, "saxe", s) for a in ("tanh", "relu") for s in range(args.digits_seeds)]
    rec = run_task(
        "digits",
        dx,
        dy,
        [64, 32, 16, 8, 10],
        specs,
        args,
        epochs=args.digits_epochs,
        lr=1e-3,
        train_frac=0.7,
    )
    rows = headline("digits", rec, specs, rec.hooks[-1])
    print("digits, last hidden layer (width 8):")
    print_rows(rows)
    add_task_section(
        report, "scikit-learn digits", rec, specs, rows, args, epochs=args.digits_epochs
    )
    return rows, histories(rec, specs)


def histories(rec, specs) -> dict:
    """Every recorded plane point, JSON-safe, keyed by model name."""
    return {
        s.name: [
            {k: (v if isinstance(v, str) else float(v)) for k, v in r.items()}
            for r in rec.hist[i].records
        ]
        for i, s in enumerate(specs)
    }


def summary(rows) -> dict[str, float]:
    def col(prefix, key):
        return np.array([r[key] for r in rows if r["model"].startswith(prefix)])

    return {
        "info/mean_fall_bits/szt_tanh_saxe": float(col("tanh-saxe", "fall_binning").mean()),
        "info/n_fall_over_0.5/szt_tanh_saxe": float((col("tanh-saxe", "fall_binning") > 0.5).sum()),
        "info/n_fall_over_0.5/szt_tanh_default": float(
            (col("tanh-default", "fall_binning") > 0.5).sum()
        ),
        "info/mean_fall_fixed_bins/szt_relu": float(col("relu", "fall_fixed_global_bins").mean()),
        "info/mean_fall_rescaled_bins/szt_relu": float(col("relu", "fall_rescaled_bins").mean()),
    }


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)  # tiny ops: threads only add synchronisation (see info/_threads.py)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    t0 = time.time()
    report = Report("Information plane: which compression is real?", config=vars(args))
    rows, szt_hist = run_szt(args, report)
    _, digits_hist = run_digits(args, report)
    s = summary(rows)
    report.add_metrics(s)
    print("summary: " + ", ".join(f"{k}={v:.3f}" for k, v in s.items()))
    out = report.write(args.out)
    write_json(
        Path(args.out) / "histories.json", {"12-bit": szt_hist, "digits": digits_hist}, indent=None
    )
    print(f"report: {out} (total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
