"""SAE evaluation: reconstruction, sparsity and spliced-in downstream metrics.

Formulas (SAELens / SAEBench conventions; see the research anchors):
FVU = sum ||x - x_hat||^2 / sum ||x - mean(x)||^2 (centred: the older SAEBench/SAELens
denominator E||x||^2 - (mean_d E[x_d^2])^2 overstates explained variance when x has a
large mean); explained variance = 1 - FVU; cosine = mean_rows cos(x, x_hat); L2 ratio =
mean_rows ||x_hat|| / ||x||; relative reconstruction bias = E||x_hat||^2 / E<x, x_hat>;
L0 / L1 = mean number / sum of active latents per row. Spliced (Bricken et al. 2023;
Gao et al. 2024): the reconstruction replaces the activation inside the model; CE-loss
score = (CE_zero - CE_spliced) / (CE_zero - CE_clean), KL score = 1 - KL_spliced /
KL_zero with KL(p_clean || p); for sentence encoders the cosine between spliced and clean
sentence embeddings.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from hiddenlens._keys import metric_key
from hiddenlens.store.source import sized_source

DENSITY_EDGES = np.linspace(-7.0, 0.0, 15)


def reconstruction_metrics(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """Pure metrics of rows x, x_hat [n, d] (float64 accumulation)."""
    acc = _Acc(x.shape[1], 1)
    acc.add(x, x_hat, torch.zeros(x.shape[0], 1))
    return {k: v for k, v in acc.result().items() if not k.startswith(("l0", "l1"))}


class _Acc:
    """Running sums for the row metrics, in float64."""

    def __init__(self, d: int, d_sae: int):
        self.n = 0
        self.sum_x = torch.zeros(d, dtype=torch.float64)
        self.sums = dict.fromkeys(("x2", "err2", "cos", "ratio", "xh2", "dot", "l0", "l1"), 0.0)
        self.fired = torch.zeros(d_sae, dtype=torch.float64)

    def add(self, x, x_hat, z) -> None:
        x, x_hat, z = x.double().cpu(), x_hat.double().cpu(), z.cpu()
        nx, nh = x.norm(dim=1), x_hat.norm(dim=1)
        dot = (x * x_hat).sum(1)
        s = self.sums
        s["x2"] += float(x.pow(2).sum())
        s["err2"] += float((x - x_hat).pow(2).sum())
        s["cos"] += float((dot / (nx * nh).clamp_min(1e-12)).sum())
        s["ratio"] += float((nh / nx.clamp_min(1e-12)).sum())
        s["xh2"] += float(nh.pow(2).sum())
        s["dot"] += float(dot.sum())
        s["l0"] += float((z != 0).sum())
        s["l1"] += float(z.abs().sum())
        self.sum_x += x.sum(0)
        self.fired += (z != 0).sum(0).double()
        self.n += x.shape[0]

    def result(self) -> dict[str, float]:
        n, s = max(self.n, 1), self.sums
        total_var = s["x2"] - float(self.sum_x.pow(2).sum()) / n  # sum ||x - mean||^2
        fvu = s["err2"] / total_var if total_var > 0 else float("nan")
        return {
            "mse": s["err2"] / n,
            "fvu": fvu,
            "explained_variance": 1.0 - fvu,
            "cosine": s["cos"] / n,
            "l2_ratio": s["ratio"] / n,
            "relative_reconstruction_bias": s["xh2"] / s["dot"] if s["dot"] else float("nan"),
            "l0": s["l0"] / n,
            "l1": s["l1"] / n,
        }


@torch.no_grad()
def _store_pass(sae, store, hook: str, batch_size: int, max_rows: int | None) -> _Acc:
    store = sized_source(store, hook, sae.cfg.d_in)
    transcoder = getattr(type(sae), "pair_role", None) == "target"  # rows of output_hook
    hooks = [hook, sae.cfg.output_hook] if transcoder else hook
    if transcoder:
        sized_source(store, sae.cfg.output_hook, sae.d_out, "the transcoder has d_out")
    acc = _Acc(sae.d_out if transcoder else sae.cfg.d_in, sae.cfg.d_sae)
    for batch in store.batches(hooks, batch_size, shuffle=False):
        x, y = batch if transcoder else (batch, batch)
        if max_rows is not None and acc.n >= max_rows:
            break
        if max_rows is not None:
            x, y = x[: max_rows - acc.n], y[: max_rows - acc.n]
        dev = sae.W_dec.device  # store rows come on the CPU; the SAE may live on a GPU
        x, y = x.float().to(dev), y.float().to(dev)
        if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
            raise ValueError(f"non-finite activations in the store for {hook!r}")
        z = sae.encode(x)
        acc.add(y, sae.transcode(x) if transcoder else sae.decode(z), z)
    if acc.n == 0:
        raise ValueError(f"the store has no rows for {hook!r}")
    return acc


def feature_density(
    sae, store, hook: str, *, batch_size: int = 4096, max_rows: int | None = None
) -> np.ndarray:
    """Fraction of rows on which each latent fires, [d_sae]."""
    acc = _store_pass(sae, store, hook, batch_size, max_rows)
    return (acc.fired / acc.n).numpy()


def density_histogram(density: np.ndarray) -> dict[str, float]:
    """Counts of log10 density in fixed bins from 1e-7 to 1, plus the dead count."""
    density = np.asarray(density, dtype=np.float64)
    live = density[density > 0]
    counts, _ = np.histogram(np.log10(np.clip(live, 10 ** DENSITY_EDGES[0], 1.0)), DENSITY_EDGES)
    out = {"density_hist_dead": float((density == 0).sum())}
    for lo, hi, c in zip(DENSITY_EDGES[:-1], DENSITY_EDGES[1:], counts):
        out[f"density_hist_log10[{lo:.1f},{hi:.1f})"] = float(c)
    return out


def evaluate(
    sae,
    store,
    hook_point: str,
    *,
    model=None,
    data=None,
    downstream: Callable | None = None,
    max_rows: int | None = None,
    batch_size: int = 4096,
    dense_threshold: float = 0.1,
    text_batch_size: int = 16,
    splice=None,
) -> dict[str, float]:
    """Flat metrics ``{"sae/<metric>/<hook_point>": float}`` of ``sae`` on the store rows.

    With ``model`` (a ModelHandle / nn.Module / spec for ``hiddenlens.hooks.load_model``) and
    ``data`` (texts or a tokenised batch), adds the spliced metrics: for language models CE
    loss clean / spliced / zero-ablated, CE-loss score and KL; for encoders the cosine of
    spliced and clean sentence embeddings. ``downstream(outputs, batch) -> float`` (a loss,
    lower is better) replaces the built-in measure and yields a loss-recovered score.
    ``splice`` (a ``hiddenlens.sae.spliced.SpliceConventions``; default SAELens's, with
    special tokens left unspliced exactly when the store dropped them) sets where the
    reconstruction is spliced and which positions CE / KL average over.
    """
    acc = _store_pass(sae, store, hook_point, batch_size, max_rows)
    out = acc.result()
    density = (acc.fired / acc.n).numpy()
    out["dead_fraction"] = float((density == 0).mean())
    out["dense_fraction"] = float((density > dense_threshold).mean())
    out["n_rows"] = float(acc.n)
    out.update(density_histogram(density))
    if model is not None:
        if data is None:
            raise ValueError("spliced metrics need data (texts or a tokenised batch) with model")
        from hiddenlens.sae.spliced import SpliceConventions, spliced_metrics

        conv = (splice or SpliceConventions()).resolved(store)
        out.update(
            spliced_metrics(
                sae,
                model,
                hook_point,
                data,
                downstream=downstream,
                batch_size=text_batch_size,
                conventions=conv,
            )
        )
    return {metric_key("sae", k, hook_point): float(v) for k, v in out.items()}
