"""Probes: linear / nearest-mean probes, batched layer sweeps, control tasks and
selectivity, MDL online codes, V-information complexity, pooling, CKA and structural
probes."""

from hiddenlens.probe.cka import CKAResult, cka_matrix, linear_cka
from hiddenlens.probe.complexity import ComplexityResult, decodability_profile, feature_complexity
from hiddenlens.probe.hygiene import (
    VOITA_FRACTIONS,
    MDLResult,
    block_ends,
    control_task,
    mdl_probe,
    probe_with_control,
    selectivity,
)
from hiddenlens.probe.linear import LinearProbe, LinearProbeRegressor, NearestMeanProbe
from hiddenlens.probe.pooling import moment_features, pool, pool_rows
from hiddenlens.probe.structural import (
    StructuralProbe,
    StructuralResult,
    score_structure,
    tree_distances,
)
from hiddenlens.probe.sweep import SweepResult, sweep

__all__ = [
    "CKAResult",
    "ComplexityResult",
    "LinearProbe",
    "LinearProbeRegressor",
    "MDLResult",
    "NearestMeanProbe",
    "StructuralProbe",
    "StructuralResult",
    "SweepResult",
    "VOITA_FRACTIONS",
    "block_ends",
    "cka_matrix",
    "control_task",
    "decodability_profile",
    "feature_complexity",
    "linear_cka",
    "mdl_probe",
    "moment_features",
    "pool",
    "pool_rows",
    "probe_with_control",
    "score_structure",
    "selectivity",
    "sweep",
    "tree_distances",
]
