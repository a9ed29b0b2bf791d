"""An in-memory activation source that can crash on cue, and planted sparse data."""

from __future__ import annotations

import numpy as np

from hiddenlens.store import MemorySource


class FakeStore(MemorySource):
    """The library's in-memory source (float32 rows) that can simulate a crash: with
    ``fail_after`` set, every ``batches`` iterator raises after that many batches."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict | None = None, fail_after=None):
        super().__init__({k: np.asarray(v, dtype=np.float32) for k, v in arrays.items()}, meta)
        self.fail_after = fail_after

    def batches(self, hooks, batch_size, **kwargs):
        it = super().batches(hooks, batch_size, **kwargs)
        return it if self.fail_after is None else self._failing(it)

    def _failing(self, it):
        for served, batch in enumerate(it):
            if served >= self.fail_after:
                raise RuntimeError("simulated crash")
            yield batch


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
    if registry.get(arch).pair_role == "target":  # a transcoder: output rows of another hook
        kw = {"apply_b_dec_to_input": False, "output_hook": "out", "d_out": d_in, **kw}
    return SAEConfig(d_in=d_in, d_sae=d_sae, architecture=arch, k=4 if topk else None,
                     matryoshka_widths=widths, **kw)  # fmt: skip
