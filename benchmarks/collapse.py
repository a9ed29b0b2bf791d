"""Benchmark: NC metrics streamed from an ActivationStore vs plain numpy on everything.

Writes N × d rows with C classes (default 1M × 384, 10 classes) through
``hiddenlens.store.cache_activations`` on an identity model, then measures, each in a fresh
subprocess so peak memory is the variant's own:

- stream: ``hiddenlens.collapse.metrics((store, hook), labels, classifier=...)`` — two
  chunked passes (float64 accumulators, then NC4);
- numpy: the plain implementation that loads the whole matrix into memory and computes
  class means, Σ_W, Σ_B, NC1–NC4 directly.

Prints wall time, peak traced allocations (tracemalloc: what the code allocates; the
memory-mapped store pages are reclaimable page cache and not counted) and peak RSS of both,
the time ratio, and the largest relative difference between the two results.

    python benchmarks/collapse.py [--rows 1000000] [--d 384] [--classes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HOOK = "0"


def make_store(root: Path, n: int, d: int, c: int) -> None:
    """Class-clustered float32 rows written via cache_activations (setup, not timed)."""
    import torch

    from hiddenlens.store import cache_activations

    rng = np.random.default_rng(0)
    y = rng.integers(0, c, n)
    np.save(root / "labels.npy", y)
    centres = rng.standard_normal((c, d)).astype(np.float32) * 2
    x = np.lib.format.open_memmap(root / "x.npy", mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, 100_000):
        e = min(s + 100_000, n)
        x[s:e] = centres[y[s:e]] + rng.standard_normal((e - s, d), dtype=np.float32)
    x.flush()
    w = (centres + 0.5 * rng.standard_normal((c, d))).astype(np.float32)
    np.save(root / "w.npy", w)
    model = torch.nn.Sequential(torch.nn.Identity())
    src = np.load(root / "x.npy", mmap_mode="r")
    cache_activations(model, src, [HOOK], root / "store", batch_size=16384, overwrite=True)


def run_stream(root: Path, chunk_rows: int) -> dict:
    from hiddenlens.collapse import metrics
    from hiddenlens.store import ActivationStore

    store = ActivationStore.open(root / "store")
    y = np.load(root / "labels.npy", allow_pickle=False)
    w = np.load(root / "w.npy", allow_pickle=False)
    return metrics((store, HOOK), y, classifier=(w, np.zeros(len(w))), chunk_rows=chunk_rows)


def run_numpy(root: Path) -> dict:
    """The straightforward implementation: load everything, then compute."""
    x = np.load(root / "x.npy", allow_pickle=False)  # [N, d] float32, fully in memory
    y = np.load(root / "labels.npy", allow_pickle=False)
    w = np.load(root / "w.npy", allow_pickle=False).astype(np.float64)
    classes = np.unique(y)
    c, n = len(classes), len(y)
    mu = np.stack([x[y == k].mean(0, dtype=np.float64) for k in classes])
    mu_g = x.mean(0, dtype=np.float64)
    sw = np.zeros((x.shape[1], x.shape[1]))
    for j, k in enumerate(classes):
        dev = x[y == k] - mu[j]  # float64 [n_c, d]
        sw += dev.T @ dev
    sw /= n
    m = mu - mu_g
    sb = m.T @ m / c
    out = {"nc1": float(np.trace(sw @ np.linalg.pinv(sb, hermitian=True)) / c)}
    wn, mn = w / np.linalg.norm(w), m / np.linalg.norm(m)
    out["nc3"] = float(np.sum((wn - mn) ** 2))
    norms = np.linalg.norm(m, axis=1)
    out["means_equinorm"] = float(norms.std() / norms.mean())
    mu32, w32 = mu.astype(np.float32), w.astype(np.float32)
    d2 = (mu32**2).sum(1)[None, :] - 2 * x @ mu32.T  # ‖x‖² does not change the argmin
    out["nc4"] = float(np.mean(np.argmax(x @ w32.T, 1) != classes[np.argmin(d2, 1)]))
    return out


def child(variant: str, root: Path, chunk_rows: int) -> None:
    """Run one variant and print a JSON line with its time and peak memory."""
    import tracemalloc

    if variant == "stream":  # imports are not part of the measurement
        import hiddenlens.collapse  # noqa: F401
        import hiddenlens.store  # noqa: F401
    tracemalloc.start()
    t0 = time.perf_counter()
    res = run_stream(root, chunk_rows) if variant == "stream" else run_numpy(root)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    print(json.dumps({"seconds": seconds, "peak_alloc": peak, "rss": peak_rss(), **res}))


def peak_rss() -> float:
    """VmHWM of this process in bytes (ru_maxrss would carry the parent's peak over exec);
    it includes resident pages of the memory-mapped store, which are reclaimable cache."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float("nan")


def spawn(variant: str, root: Path, chunk_rows: int) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--root", str(root)]
    cmd += ["--chunk-rows", str(chunk_rows)]
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")  # a shared machine: one BLAS thread each
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--chunk-rows", type=int, default=65536)
    ap.add_argument("--child", choices=["stream", "numpy"])
    ap.add_argument("--root")
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.root), args.chunk_rows)
        return 0
    root = Path(tempfile.mkdtemp(prefix="hl_bench_collapse_"))
    try:
        t0 = time.perf_counter()
        make_store(root, args.rows, args.d, args.classes)
        print(
            f"setup: {args.rows:,} x {args.d} rows, {args.classes} classes, "
            f"store written in {time.perf_counter() - t0:.1f}s"
        )
        res = {v: spawn(v, root, args.chunk_rows) for v in ("stream", "numpy")}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mib = 2**20
    for v, r in res.items():
        print(
            f"{v:7s} {r['seconds']:8.2f}s  peak alloc {r['peak_alloc'] / mib:8.1f} MiB  "
            f"peak RSS {r['rss'] / mib:8.1f} MiB  nc1={r['nc1']:.6g} nc4={r['nc4']:.4g}"
        )
    s, p = res["stream"], res["numpy"]
    diff = max(abs(s[k] - p[k]) / max(abs(p[k]), 1e-12) for k in ("nc1", "nc3", "means_equinorm"))
    print(
        f"time ratio stream/numpy: {s['seconds'] / p['seconds']:.2f}x; "
        f"alloc ratio numpy/stream: {p['peak_alloc'] / s['peak_alloc']:.1f}x; "
        f"chunk {args.chunk_rows} rows = {args.chunk_rows * args.d * 8 / mib:.0f} MiB float64; "
        f"max rel diff {diff:.1e}; nc4 diff {abs(s['nc4'] - p['nc4']):.1e}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
