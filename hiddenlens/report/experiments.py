"""``hiddenlens run EXPERIMENT``: run a script from experiments/ and point at its report.

Experiments are scripts, not library code (nothing imports them), so they run in a child
process as ``python -m experiments.NAME.run --out DIR``, from the checkout that holds them:
the current directory or one of its parents, else the checkout hiddenlens is installed from.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def find_experiments_root(start: Path | None = None) -> Path:
    """The directory that contains ``experiments/`` (a source checkout)."""
    candidates = [start or Path.cwd(), *(start or Path.cwd()).parents]
    candidates.append(Path(__file__).resolve().parents[2])
    for root in candidates:
        if (root / "experiments").is_dir():
            return root
    raise FileNotFoundError(
        "no experiments/ folder found in this directory, its parents, or the hiddenlens "
        "checkout; run from a clone of the repository"
    )


def available_experiments(root: Path) -> list[str]:
    return sorted(p.parent.name for p in (root / "experiments").glob("*/run.py"))


def run_experiment(
    name: str, out: str | Path | None = None, *, extra: list[str] | None = None
) -> int:
    """Run ``experiments/NAME/run.py`` with ``--out``; returns its exit code."""
    root = find_experiments_root()
    names = available_experiments(root)
    if name not in names:
        raise ValueError(f"unknown experiment {name!r}; available: {names}")
    out_dir = Path(out) if out else Path("runs") / name
    cmd = [sys.executable, "-m", f"experiments.{name}.run", "--out", str(out_dir.resolve())]
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.call(cmd + list(extra or []), cwd=root, env=env)
