"""hiddenlens: look inside neural networks.

Hooks pull hidden activations from any PyTorch model into an on-disk store; analyzers (sae,
codebook, probe, info, collapse, shortcut, attribution) turn them into results; viz and
report turn results into figures and a self-contained HTML page.

The top-level names below are imported lazily, so ``import hiddenlens`` does no work.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "hiddenlens.hooks",
    "hook_points": "hiddenlens.hooks",
    "resolve_hook_points": "hiddenlens.hooks",
    "capture": "hiddenlens.hooks",
    "patch": "hiddenlens.hooks",
    "attach": "hiddenlens.hooks",
    "ModelHandle": "hiddenlens.hooks",
    "as_data": "hiddenlens.data",
    "cache_activations": "hiddenlens.store",
    "ActivationStore": "hiddenlens.store",
    "Report": "hiddenlens.report",
    "mutual_information": "hiddenlens.info",
    "metric_key": "hiddenlens._keys",
    "pair": "hiddenlens._keys",
    "parse_key": "hiddenlens._keys",
    "torch_threads": "hiddenlens._threads",
}
_SUBPACKAGES = (
    "data",
    "hooks",
    "store",
    "sae",
    "codebook",
    "probe",
    "info",
    "collapse",
    "shortcut",
    "attribution",
    "viz",
    "report",
    "corpus",
    "analyze",
)

__all__ = ["__version__", *_EXPORTS, *_SUBPACKAGES]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"hiddenlens.{name}")
    raise AttributeError(f"module 'hiddenlens' has no attribute {name!r}")
