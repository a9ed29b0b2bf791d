"""Probe sweep benchmark: hiddenlens.probe.sweep vs a loop of scikit-learn, side by side.

Two comparisons on the same 5 stratified outer folds of the same rows, for every layer:

- ``cv`` (the sweep's default): the L2 strength chosen per layer and outer fold by 3-fold
  inner cross-validation over C in 0.01 ... 100; scikit-learn's equivalent is
  ``LogisticRegressionCV(Cs=the same grid, cv=the same inner folds)`` (lbfgs, which
  warm-starts along the C path and refits at the best C) in a ``StandardScaler`` pipeline,
  per layer and outer fold; the sweep fits all layers x outer folds x inner folds in one
  batched L-BFGS per C, warm-started along the path.
- ``fixed``: C = 1 (``sweep(alpha=1 / n_train)``) vs ``LogisticRegression(C=1)``.

Printed per mode: the speed ratio (target >= 5x) and the largest per-layer difference in
cross-validated accuracy (target <= 0.5 point; with CV, both sides' choice of C can
differ where two candidates score alike).

Data: a MiniLM ActivationStore when ``--store DIR`` points at one (the demo caches one at
runs/demo/store; label: "token is a word continuation (##)"), otherwise synthetic
activations shaped like a transformer's (6 layers x 384 dims, low-rank correlated
features, a few outlier dimensions with large means, a residual stream that drifts from
layer to layer) with a planted label whose linear decodability rises with depth.

    python benchmarks/probe.py [--rows 20000] [--store runs/demo/store] [--threads 2]
                               [--mode cv|fixed|both]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np


def synthetic(n: int, d: int = 384, layers: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(64, d)) / 8.0
    h = rng.normal(size=(n, 64)) @ basis + 0.3 * rng.normal(size=(n, d))
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    y = rng.integers(0, 2, n)
    outliers = np.zeros(d)
    outliers[rng.choice(d, 4, replace=False)] = 20.0
    out = {}
    for layer in range(layers):
        # residual update: mixing, plus the label written in a little more at every layer
        h = h + 0.3 * np.tanh(h @ (rng.normal(size=(d, d)) / np.sqrt(d)))
        h = h + 0.08 * (2 * y[:, None] - 1) * direction
        out[f"encoder.layer.{layer}"] = (h + outliers).astype(np.float32)
    return out, y, "synthetic (planted label)"


def from_store(path: Path, n: int):
    from hiddenlens.hooks import load_model
    from hiddenlens.store import ActivationStore

    store = ActivationStore.open(path)
    hooks = [h for h in store.hook_points if not h.endswith("#grad")][:6]
    rows = np.sort(np.random.default_rng(0).choice(len(store), min(n, len(store)), replace=False))
    ids = np.asarray(store.meta["token_id"])[rows]
    tok = load_model("minilm").tokenizer
    pieces = np.array(tok.convert_ids_to_tokens(ids.tolist()))
    y = np.char.startswith(pieces, "##").astype(int)
    arrays = {h: np.asarray(store.rows(h), np.float32)[rows] for h in hooks}
    return arrays, y, f"MiniLM store {path} (label: is_continuation)"


def sklearn_loop(arrays, y, folds, mode: str):
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold, cross_validate
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from hiddenlens.probe._alpha import C_GRID, N_INNER

    if mode == "cv":  # the sweep's inner folds: StratifiedKFold(3, shuffle, seed) per training set
        inner = StratifiedKFold(N_INNER, shuffle=True, random_state=0)
        clf = LogisticRegressionCV(Cs=sorted(C_GRID), cv=inner, scoring="accuracy", max_iter=1000)
    else:
        clf = LogisticRegression(C=1.0, max_iter=1000)
    model = make_pipeline(StandardScaler(), clf)
    warnings.filterwarnings("ignore", category=FutureWarning)  # sklearn 1.9's notices of 1.10 changes
    acc, Cs = [], []
    for X in arrays.values():
        out = cross_validate(model, X, y, cv=folds, return_estimator=mode == "cv")
        acc.append(out["test_score"].mean())
        if mode == "cv":  # geometric mean of the chosen C over the outer folds
            Cs.append(np.exp(np.mean([np.log(e[-1].C_[0]) for e in out["estimator"]])))
    return np.array(acc), np.array(Cs) if Cs else np.ones(len(acc))


def compare(arrays, y, folds, mode: str, tol: float) -> None:
    """Time both sides in one run and print the ratio and the accuracy differences."""
    from hiddenlens.probe import sweep

    n = len(y)
    alpha = None if mode == "cv" else 1.0 / (n * (folds.n_splits - 1) / folds.n_splits)
    t0 = time.perf_counter()
    res = sweep(arrays, y, cv=folds, alpha=alpha, n_boot=50, tol=tol)
    t_ours = time.perf_counter() - t0
    print(f"[{mode}] hiddenlens sweep: {t_ours:.2f} s", flush=True)
    t0 = time.perf_counter()
    ref, ref_C = sklearn_loop(arrays, y, folds, mode)
    t_sk = time.perf_counter() - t0
    name = "LogisticRegressionCV" if mode == "cv" else "LogisticRegression"
    print(f"[{mode}] sklearn {name}(lbfgs) loop: {t_sk:.2f} s", flush=True)
    ours = res.fold_scores.mean(1)
    for h, a, b, c, rc in zip(arrays, ours, ref, res.extra["alpha"], ref_C):
        C = 1.0 / (c * n * (folds.n_splits - 1) / folds.n_splits)
        print(f"  {h}: accuracy hiddenlens {a:.4f}  sklearn {b:.4f}  diff {100 * (a - b):+.2f} pt"
              f"  (C hiddenlens {C:.3g}, sklearn {rc:.3g})")
    diff = 100 * np.abs(ours - ref).max()
    print(f"[{mode}] speed ratio (sklearn / hiddenlens): {t_sk / t_ours:.2f}x (target >= 5x)")
    print(f"[{mode}] max accuracy difference: {diff:.3f} points (target <= 0.5)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--store", type=Path, default=None)
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch and BLAS threads")
    parser.add_argument("--tol", type=float, default=1e-3, help="sweep's L-BFGS gradient tolerance")
    parser.add_argument("--mode", choices=("cv", "fixed", "both"), default="both",
                        help="cv: alpha by inner CV (the default sweep); fixed: C = 1")
    args = parser.parse_args()

    import torch
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    if args.threads:
        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)
    if args.store is not None and (args.store / "manifest.json").exists():
        arrays, y, source = from_store(args.store, args.rows)
    else:
        arrays, y, source = synthetic(args.rows)
    n, d = next(iter(arrays.values())).shape
    print(
        f"data: {source}; {len(arrays)} layers x {n} rows x {d} dims; "
        f"positives {y.mean():.3f}; torch threads {torch.get_num_threads()}",
        flush=True,
    )
    folds = StratifiedKFold(args.cv, shuffle=True, random_state=0)
    for mode in ("cv", "fixed") if args.mode == "both" else (args.mode,):
        compare(arrays, y, folds, mode, args.tol)


if __name__ == "__main__":
    main()
