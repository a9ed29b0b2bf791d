"""Information-bottleneck analysis: mutual-information estimators, the information plane,
lossy-compression estimates and local rank.

See Shwartz-Ziv & Tishby (2017), Saxe et al. (2018), Kolchinsky & Tracey (2017), Kraskov et
al. (2004), Poole et al. (2019), Butakov et al. (2024, lossy compression), Kawaguchi et al.
(2023, bottleneck vs generalisation) and Patel & Shwartz-Ziv (2024, local rank). Names are
imported lazily so ``import hiddenlens.info`` does no work (torch is only needed by the
neural bounds, the callback, the autoencoder compressor and local rank).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "MIEstimate": "hiddenlens.info.result",
    "mutual_information": "hiddenlens.info.estimate",
    "ESTIMATORS": "hiddenlens.info.estimate",
    "binning_mi": "hiddenlens.info.binning",
    "bin_activations": "hiddenlens.info.binning",
    "plane_binning": "hiddenlens.info.binning",
    "kde_mi": "hiddenlens.info.kde",
    "plane_kde": "hiddenlens.info.kde",
    "ksg_mi": "hiddenlens.info.knn",
    "neural_mi": "hiddenlens.info.neural",
    "lossy_mutual_information": "hiddenlens.info.lossy",
    "PCACompressor": "hiddenlens.info.lossy",
    "AutoencoderCompressor": "hiddenlens.info.lossy",
    "InformationPlane": "hiddenlens.info.plane",
    "PlaneHistory": "hiddenlens.info.plane",
    "local_rank": "hiddenlens.info.rank",
    "GeneralisationRecord": "hiddenlens.info.generalisation",
    "bottleneck_vs_gap": "hiddenlens.info.generalisation",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hiddenlens.info' has no attribute {name!r}")
