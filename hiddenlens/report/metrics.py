"""Flat metrics with provenance: the ``metrics.json`` every run writes.

The file itself is written by ``hiddenlens._io.write_json`` (non-finite floats as ``null``,
a NaN shown as missing, never as zero; numpy and torch scalars as plain numbers).
"""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def flatten(metrics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a/b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "/"))
        else:
            out[name] = value
    return out


def git_sha(cwd: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance() -> dict[str, Any]:
    """Library versions, git sha, host and UTC time of this run."""
    import numpy
    import torch

    from hiddenlens import __version__

    return {
        "hiddenlens": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git_sha": git_sha(Path(__file__).resolve().parent),
        "time_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
