"""Benchmark: information-plane estimates, hiddenlens vs a straightforward reference.

Workload (default): 5 layers x 50 epochs x 4,096 samples of tanh activations of a random
12-10-7-5-4-3 network whose weights grow over the "epochs" (so activations saturate, as in
training), binary labels. For every (layer, epoch):

- binning: I(X;T), I(T;Y) with 30 bins on [-1, 1]. Reference: ``np.digitize`` and
  ``np.unique(axis=0)`` over the binned rows, once for T and once per class (the way the
  original information-plane code does it). hiddenlens: one mixed-radix row code, then
  plug-in entropies of T and (T, Y).
- KDE (Kolchinsky-Tracey, noise variance 0.1): upper and lower bounds on I(X;T) and I(T;Y).
  Reference: the full N x N squared-distance matrix (scipy ``cdist``) and ``logsumexp``,
  separately for each bound and for H(T) and every H(T | Y=c), as in Saxe et al.'s code.
  hiddenlens: blocks of 512 rows, one distance pass serving both bounds and all classes.

Both run in the same process on the same data; the script checks they agree, prints the
time ratio, and the peak memory of one KDE estimate (tracemalloc) at N = 4,096 and, for
hiddenlens only, at a larger N where the reference's N x N matrix would not be small.

    python benchmarks/info.py [--epochs 50] [--samples 4096] [--kde-epochs 50]

(the reference KDE takes about 10 CPU-seconds per estimate at N = 4,096, so on a busy
machine ``--kde-epochs 2`` times KDE on the first 2 epochs only.)
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from scipy.spatial.distance import cdist
from scipy.special import logsumexp

from hiddenlens.info.binning import plane_binning
from hiddenlens.info.kde import plane_kde

LN2 = np.log(2.0)


def make_activations(n_layers: int, n_epochs: int, n: int, seed: int = 0):
    """acts[e][l]: [n, width] tanh activations; labels [n]."""
    rng = np.random.default_rng(seed)
    dims = [12, 10, 7, 5, 4, 3][: n_layers + 1]
    x = rng.integers(0, 2, (n, dims[0])).astype(float)
    y = (x.sum(1) > dims[0] / 2).astype(np.int64)
    ws = [rng.standard_normal((a, b)) / np.sqrt(b) for a, b in zip(dims[:-1], dims[1:])]
    acts = []
    for e in range(n_epochs):
        scale = 1.0 + 3.0 * e / max(n_epochs - 1, 1)  # growing weights -> saturation
        h, layer_acts = x, []
        for w in ws:
            h = np.tanh(h @ (w * scale))
            layer_acts.append(h)
        acts.append(layer_acts)
    return acts, y


def ref_entropy_rows(binned: np.ndarray) -> float:
    _, counts = np.unique(binned, axis=0, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def ref_binning(t: np.ndarray, y: np.ndarray, bins: int = 30) -> tuple[float, float]:
    edges = np.linspace(-1, 1, bins + 1)
    binned = np.clip(np.digitize(t, edges) - 1, 0, bins - 1)
    h_t = ref_entropy_rows(binned)
    h_t_given_y = sum((y == c).mean() * ref_entropy_rows(binned[y == c]) for c in np.unique(y))
    return h_t, h_t - h_t_given_y


def ref_entropy_kl(t: np.ndarray, var: float) -> float:
    """KDE upper bound on H(T + noise), nats (full N x N matrix)."""
    n, d = t.shape
    dists = cdist(t, t, "sqeuclidean")
    lprobs = logsumexp(-dists / (2 * var), axis=1) - np.log(n) - d / 2 * np.log(2 * np.pi * var)
    return d / 2 - float(lprobs.mean())


def ref_kde(t: np.ndarray, y: np.ndarray, var: float = 0.1) -> dict[str, float]:
    n, d = t.shape
    h_cond = d / 2 * (np.log(2 * np.pi * var) + 1)
    out = {}
    for name, v, shift in (("upper", var, 0.0), ("lower", 4 * var, d / 2 * np.log(0.25))):
        h = ref_entropy_kl(t, v) + shift
        h_y = sum((y == c).mean() * (ref_entropy_kl(t[y == c], v) + shift) for c in np.unique(y))
        out[f"ixt_{name}"] = (h - h_cond) / LN2
        out[f"ity_{name}"] = (h - h_y) / LN2
    return out


def timed(fn, acts, y):
    t0 = time.perf_counter()
    res = [[fn(t, y) for t in layer_acts] for layer_acts in acts]
    return time.perf_counter() - t0, res


def peak_mb(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument(
        "--kde-epochs",
        type=int,
        default=2,
        help="epochs timed for KDE (the reference is O(N^2) per layer: all 50 take ~40 min)",
    )
    p.add_argument("--big", type=int, default=16384, help="N for the hiddenlens-only memory check")
    a = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # same (single) thread for both sides: a fair, quieter comparison
    acts, y = make_activations(a.layers, a.epochs, a.samples)
    print(f"workload: {a.layers} layers x {a.epochs} epochs x {a.samples} samples")

    t_ref, r_ref = timed(ref_binning, acts, y)
    t_hl, r_hl = timed(lambda t, yy: plane_binning(t, yy, bins=30, value_range=(-1, 1)), acts, y)
    diff = max(
        abs(u - v) for lr, lh in zip(r_ref, r_hl) for pr, ph in zip(lr, lh) for u, v in zip(pr, ph)
    )
    print(
        f"binning   reference {t_ref:7.2f} s  hiddenlens {t_hl:7.2f} s  ratio {t_ref / t_hl:5.1f}x  "
        f"max |diff| {diff:.2e} bits"
    )

    kde_acts = acts[: a.kde_epochs or a.epochs]
    print(f"kde on {len(kde_acts)} of the epochs ({len(kde_acts) * a.layers} estimates)")
    t_ref, r_ref = timed(ref_kde, kde_acts, y)
    t_hl, r_hl = timed(lambda t, yy: plane_kde(t, yy, noise_var=0.1), kde_acts, y)
    diff = max(abs(r[k] - h[k]) for lr, lh in zip(r_ref, r_hl) for r, h in zip(lr, lh) for k in r)
    print(
        f"kde       reference {t_ref:7.2f} s  hiddenlens {t_hl:7.2f} s  ratio {t_ref / t_hl:5.1f}x  "
        f"max |diff| {diff:.2e} bits"
    )

    t = acts[-1][0]
    print(
        f"kde peak memory, one estimate at N={a.samples}: reference {peak_mb(lambda: ref_kde(t, y)):.0f} MiB, "
        f"hiddenlens {peak_mb(lambda: plane_kde(t, y)):.0f} MiB (auto chunk)"
    )
    rng = np.random.default_rng(1)
    tb, yb = np.tanh(rng.standard_normal((a.big, 10))), rng.integers(0, 2, a.big)
    t0 = time.perf_counter()
    mb = peak_mb(lambda: plane_kde(tb, yb))
    print(
        f"kde peak memory at N={a.big}: hiddenlens {mb:.0f} MiB in {time.perf_counter() - t0:.1f} s "
        f"(an N x N float64 matrix alone would be {a.big**2 * 8 / 2**20:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
