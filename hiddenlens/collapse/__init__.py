"""Neural-collapse geometry: NC1–NC4, CDNV, simplex ETF, UFM simulator, tracking,
mixed-input (mixup) feature geometry.

Papyan, Han & Donoho, "Prevalence of neural collapse during the terminal phase of deep
learning training" (PNAS 2020), and the follow-ups cited in each module.
"""

from hiddenlens.collapse.etf import etf_distance, simplex_etf
from hiddenlens.collapse.imbalance import cosine_matrix, imbalance_metrics
from hiddenlens.collapse.layers import layer_metrics, layer_stats, variability_ratio
from hiddenlens.collapse.metrics import (
    SigmaBWarning,
    cdnv,
    cdnv_matrix,
    metrics,
    nc1,
    nc4,
    stats_metrics,
)
from hiddenlens.collapse.mixup import (
    MixupGeometry,
    mix_pairs,
    mixup_batch,
    mixup_geometry,
    plane_coordinates,
)
from hiddenlens.collapse.stats import ClassStats, ClassStatsAccumulator, accumulate
from hiddenlens.collapse.tracking import CollapseTracker, zero_error_epochs
from hiddenlens.collapse.ufm import UFMConfig, UFMResult, simulate_ufm

__all__ = [
    "ClassStats",
    "ClassStatsAccumulator",
    "CollapseTracker",
    "MixupGeometry",
    "SigmaBWarning",
    "UFMConfig",
    "UFMResult",
    "accumulate",
    "cdnv",
    "cdnv_matrix",
    "cosine_matrix",
    "etf_distance",
    "imbalance_metrics",
    "layer_metrics",
    "layer_stats",
    "metrics",
    "mix_pairs",
    "mixup_batch",
    "mixup_geometry",
    "plane_coordinates",
    "nc1",
    "nc4",
    "simplex_etf",
    "simulate_ufm",
    "stats_metrics",
    "variability_ratio",
    "zero_error_epochs",
]
