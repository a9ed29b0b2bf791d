"""The information plane: I(X;T) and I(T;Y) per layer per epoch (Shwartz-Ziv & Tishby 2017).

``InformationPlane`` is a training-loop callback: call ``on_epoch_end(epoch)`` and it runs
the model on a fixed evaluation set, captures each hook point with
:func:`hiddenlens.hooks.capture`, and records for each layer and estimator the pair
(I(X;T), I(T;Y)) next to two diagnostics Saxe et al. (2018) showed drive binning-based
"compression": the fraction of saturated units (|t| near the top of the bin range) and the
largest activation (which moves per-epoch rescaled bins).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from hiddenlens._keys import metric_key
from hiddenlens.info.binning import plane_binning
from hiddenlens.info.kde import plane_kde

log = logging.getLogger(__name__)

PLANE_ESTIMATORS = ("binning", "binning_rescaled", "kde")


@dataclass
class PlaneHistory:
    """Everything an information-plane run recorded.

    ``records`` is a list of flat dicts {"epoch", "layer", "estimator", "ixt", "ity", ...};
    :meth:`array` turns it into [epochs, layers] arrays for plotting.
    """

    layers: list[str]
    records: list[dict] = field(default_factory=list)

    @property
    def epochs(self) -> np.ndarray:
        return np.array(sorted({r["epoch"] for r in self.records}))

    def array(self, key: str, estimator: str = "binning") -> np.ndarray:
        """[n_epochs, n_layers] array of ``key`` ("ixt", "ity", "max_abs", ...), NaN if missing."""
        epochs = list(self.epochs)
        out = np.full((len(epochs), len(self.layers)), np.nan)
        for r in self.records:
            if r["estimator"] == estimator and key in r:
                out[epochs.index(r["epoch"]), self.layers.index(r["layer"])] = r[key]
        return out

    def plot_data(self, estimator: str = "binning") -> dict:
        """The dict :func:`hiddenlens.viz.info.plot_information_plane` takes."""
        return {
            "epochs": self.epochs,
            "layers": list(self.layers),
            "ixt": self.array("ixt", estimator),
            "ity": self.array("ity", estimator),
            "estimator": estimator,
        }

    def to_metrics(self, estimator: str = "binning") -> dict[str, float]:
        """Final-epoch values, flat: {"info/binning_ixt/<layer>": bits, ...}."""
        ixt, ity = self.array("ixt", estimator), self.array("ity", estimator)
        out = {}
        for j, layer in enumerate(self.layers):
            out[metric_key("info", f"{estimator}_ixt", layer)] = float(ixt[-1, j])
            out[metric_key("info", f"{estimator}_ity", layer)] = float(ity[-1, j])
            fall = float(np.nanmax(ixt[:, j]) - ixt[-1, j])
            out[metric_key("info", f"{estimator}_ixt_fall", layer)] = fall
        return out


def layer_record(
    t: np.ndarray,
    y: np.ndarray,
    estimator: str,
    *,
    bins: int = 30,
    value_range=None,
    noise_var: float = 0.1,
    kde_rows=None,
    saturation: float = 0.95,
) -> dict:
    """The plane point and diagnostics of one layer for one estimator (pure function).

    estimator: "binning" (``bins`` over ``value_range``, default the data range),
    "binning_rescaled" (bins over [min, max] of this very call — the per-epoch rescaling
    whose artefacts Saxe et al. describe) or "kde" (upper bound, lower in "ixt_lower").
    """
    t = np.asarray(t, dtype=np.float64).reshape(len(t), -1)
    rec = {"max_abs": float(np.abs(t).max()), "saturation": float(np.mean(np.abs(t) >= saturation))}
    if estimator in ("binning", "binning_rescaled"):
        vr = value_range if estimator == "binning" else None
        if vr is None:
            lo, hi = float(t.min()), float(t.max())
            vr = (lo, hi if hi > lo else lo + 1.0)  # a dead layer: one bin, MI 0
        rec["ixt"], rec["ity"] = plane_binning(t, y, bins=bins, value_range=vr)
    elif estimator == "kde":
        if kde_rows is not None:
            t, y = t[kde_rows], np.asarray(y)[kde_rows]
        k = plane_kde(t, y, noise_var=noise_var)
        rec.update(
            ixt=k["ixt_upper"],
            ity=k["ity_upper"],
            ixt_lower=k["ixt_lower"],
            ity_lower=k["ity_lower"],
        )
    else:
        raise ValueError(f"estimator must be one of {PLANE_ESTIMATORS}, got {estimator!r}")
    return rec


class InformationPlane:
    """Training callback recording I(X;T), I(T;Y) per hook point per epoch.

    Args:
        model: nn.Module or ModelHandle; run on ``x_eval`` (one forward pass) each call.
        hook_points: layers to record (names or globs, see :func:`hiddenlens.hook_points`).
        x_eval: fixed evaluation inputs (tensor), distinct rows (I(X;T) = H(T) assumes it).
        y_eval: [n] integer labels.
        estimators: subset of ("binning", "binning_rescaled", "kde").
        bins, value_range: binning settings (value_range None: each layer's data range).
        noise_var: KDE noise variance; kde_max_rows: subsample for KDE (cost is O(n²)).
        saturation: |t| threshold counted as saturated.
    """

    def __init__(
        self,
        model,
        hook_points,
        x_eval,
        y_eval,
        *,
        estimators=("binning",),
        bins: int = 30,
        value_range=None,
        noise_var: float = 0.1,
        kde_max_rows: int | None = 1024,
        saturation: float = 0.95,
        seed: int = 0,
    ):
        bad = [e for e in estimators if e not in PLANE_ESTIMATORS]
        if bad or not estimators:
            raise ValueError(
                f"estimators must be a non-empty subset of {PLANE_ESTIMATORS}, got {estimators!r}"
            )
        y = np.asarray(y_eval)
        if y.ndim != 1 or len(y) != len(x_eval):
            raise ValueError(
                f"y_eval must be [n] labels for the {len(x_eval)} x_eval rows, got shape {y.shape}"
            )
        self.model, self.hook_points, self.x_eval, self.y_eval = model, hook_points, x_eval, y
        self.estimators, self.bins, self.value_range = tuple(estimators), bins, value_range
        self.noise_var, self.kde_max_rows, self.saturation = noise_var, kde_max_rows, saturation
        self.seed = seed
        self.history_: PlaneHistory | None = None

    def _activations(self) -> dict[str, np.ndarray]:
        import torch

        from hiddenlens.hooks import capture, resolve_hook_points
        from hiddenlens.hooks.names import unwrap_model

        module = unwrap_model(self.model)
        names = resolve_hook_points(module, self.hook_points)
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), capture(module, names) as cap:
                cap.run(self.x_eval)
        finally:
            module.train(was_training)
        return {k: cap[k].reshape(len(self.y_eval), -1).double().numpy() for k in names}

    def on_epoch_end(self, epoch: int, **extra: float) -> list[dict]:
        """Record one epoch; ``extra`` (e.g. gen_gap=0.03) is stored on every record."""
        acts = self._activations()
        if self.history_ is None:
            self.history_ = PlaneHistory(layers=list(acts))
        n = len(self.y_eval)
        kde_rows = None
        if self.kde_max_rows is not None and n > self.kde_max_rows:
            kde_rows = np.random.default_rng(self.seed).choice(n, self.kde_max_rows, replace=False)
        new = []
        for layer, t in acts.items():
            for est in self.estimators:
                rec = layer_record(
                    t,
                    self.y_eval,
                    est,
                    bins=self.bins,
                    value_range=self.value_range,
                    noise_var=self.noise_var,
                    kde_rows=kde_rows,
                    saturation=self.saturation,
                )
                new.append({"epoch": int(epoch), "layer": layer, "estimator": est, **rec, **extra})
        self.history_.records.extend(new)
        log.debug("information plane epoch %d: %d records", epoch, len(new))
        return new
