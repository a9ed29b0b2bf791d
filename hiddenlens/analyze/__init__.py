"""The main job as one declarative run: ``hiddenlens analyze RUN.toml --out DIR``.

A run config names the model, the data and its labels, the hooks to cache and the analyzer
sections to run; :func:`analyze` caches activations, trains the SAEs, runs one section per
analyzer and writes ``report.html`` + ``metrics.json`` — every stage resumable (see
:mod:`hiddenlens.analyze.pipeline`). ``hiddenlens.analyze(config, out_dir)`` is the same
call: this module is callable. Bundled configs live in ``hiddenlens/analyze/configs/``.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

from hiddenlens.analyze.config import RunConfig, load_config
from hiddenlens.analyze.pipeline import AnalyzeResult, analyze

CONFIG_DIR = Path(__file__).parent / "configs"


def bundled_config(name: str) -> Path:
    """Path of a bundled config (``"demo"``, ``"tinylm"``)."""
    path = CONFIG_DIR / f"{name}.toml"
    if not path.is_file():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
        raise FileNotFoundError(f"no bundled config {name!r}; bundled: {names}")
    return path


class _CallableModule(types.ModuleType):
    """Lets ``hiddenlens.analyze(config, out_dir)`` call :func:`analyze`."""

    def __call__(self, config, out_dir, **kwargs) -> AnalyzeResult:
        return analyze(config, out_dir, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["AnalyzeResult", "RunConfig", "analyze", "bundled_config", "load_config"]
