"""In-memory stand-ins for an activation store and planted sparse data."""

from __future__ import annotations

import numpy as np
import torch


class FakeStore:
    """Duck-typed ActivationStore over in-memory arrays.

    batches(): a seeded global permutation; global batch i is rows
    perm[i*B*W : (i+1)*B*W] and rank r takes its r-th contiguous block of B rows, so W
    ranks with B rows each see exactly the single-process batches of B*W rows.
    """

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict | None = None, fail_after=None):
        self.arrays = {k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
        self.meta = meta or {}
        self.fail_after = fail_after
        self.hook_points = [h for h in self.arrays if not h.endswith("#grad")]

    def __len__(self):
        return len(next(iter(self.arrays.values())))

    def d(self, hook):
        return self.arrays[hook].shape[1]

    def stats(self, hook):
        a = self.arrays[hook].astype(np.float64)
        return {
            "mean": a.mean(0),
            "var": a.var(0),
            "mean_norm": float(np.linalg.norm(a, axis=1).mean()),
        }

    def rows(self, hook, start=0, stop=None):
        return self.arrays[hook][start:stop]

    def batches(
        self, hooks, batch_size, *, shuffle=True, seed=0, rank=0, world_size=1, drop_last=False,
        interleave=True, start_batch=0,
    ):
        names = hooks if isinstance(hooks, list) else [hooks]
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        gb = batch_size * world_size
        served = 0
        for start in range(0, n, gb):
            idx = order[start : start + gb]
            if len(idx) < gb and drop_last:
                break
            local = idx[rank * batch_size : (rank + 1) * batch_size]
            if len(local) == 0:
                break
            if start // gb < start_batch:
                continue
            if self.fail_after is not None and served >= self.fail_after:
                raise RuntimeError("simulated crash")
            served += 1
            out = [torch.from_numpy(self.arrays[h][local]) for h in names]
            yield tuple(out) if isinstance(hooks, list) else out[0]


def planted_data(n=20000, d=32, m=64, k_true=3, seed=0, mean_shift=0.0):
    """Rows = sparse nonnegative combinations of m planted unit directions (+ a mean)."""
    rng = np.random.default_rng(seed)
    feats = rng.normal(size=(m, d))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    codes = np.zeros((n, m))
    for i in range(n):
        j = rng.choice(m, size=k_true, replace=False)
        codes[i, j] = rng.uniform(0.5, 1.5, size=k_true)
    x = codes @ feats + mean_shift
    return x.astype(np.float32), feats


def small_config(arch, d_in=8, d_sae=32, **kw):
    """A small valid SAEConfig of any registered architecture."""
    from hiddenlens.sae import SAEConfig, registry

    topk = registry.facts(arch)["topk_family"]
    widths = [d_sae // 4, d_sae] if arch == "matryoshka_batchtopk" else None
    return SAEConfig(d_in=d_in, d_sae=d_sae, architecture=arch, k=4 if topk else None,
                     matryoshka_widths=widths, **kw)  # fmt: skip
