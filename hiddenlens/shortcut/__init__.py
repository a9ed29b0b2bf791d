"""Shortcut and spurious-feature bias: controlled two-feature data, the shortcut-bias score,
group-robustness metrics, early-decodability and opposing-signal detectors, mitigations.

References: Hermann et al., "On the Foundations of Shortcut Learning" (ICLR 2024); Tiwari &
Shenoy, "Overcoming Simplicity Bias in Deep Networks using a Feature Sieve" (ICML 2023);
Rosenfeld & Risteski, "Outliers with Opposing Signals Have an Outsized Effect on Neural
Network Optimization" (ICLR 2024); Kirichenko et al., "Last Layer Re-Training is Sufficient
for Robustness to Spurious Correlations" (ICLR 2023).
"""

from hiddenlens.shortcut.bias import bias, bias_from_predictions, predict_scores, reliance
from hiddenlens.shortcut.data import (
    SPLITS,
    ShortcutDataset,
    TwoFeatureConfig,
    TwoFeatureSplit,
    bayes_log_odds,
    generate,
    make_dataset,
)
from hiddenlens.shortcut.groups import (
    early_decodability,
    equal_opportunity_difference,
    group_metrics,
    spurious_predictability,
)
from hiddenlens.shortcut.mitigate import DFR, group_weights
from hiddenlens.shortcut.opposing import LossTracker, OpposingSignals

__all__ = [
    "DFR",
    "SPLITS",
    "LossTracker",
    "OpposingSignals",
    "ShortcutDataset",
    "TwoFeatureConfig",
    "TwoFeatureSplit",
    "bayes_log_odds",
    "bias",
    "bias_from_predictions",
    "early_decodability",
    "equal_opportunity_difference",
    "generate",
    "group_metrics",
    "group_weights",
    "make_dataset",
    "predict_scores",
    "reliance",
    "spurious_predictability",
]
