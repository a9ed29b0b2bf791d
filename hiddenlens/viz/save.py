"""Write a figure to disk (the one viz function with a side effect), atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def is_plotly(fig: Any) -> bool:
    return type(fig).__module__.startswith("plotly")


def save_figure(fig: Any, path: str | Path, *, dpi: int = 150) -> Path:
    """Save a matplotlib Figure (.png/.svg/.pdf) or a plotly figure (.html/.json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if is_plotly(fig):
        if path.suffix == ".json":
            tmp.write_text(fig.to_json(), encoding="utf-8")
        elif path.suffix == ".html":
            tmp.write_text(fig.to_html(include_plotlyjs=True, full_html=True), encoding="utf-8")
        else:
            raise ValueError(f"plotly figures save as .html or .json, not {path.suffix!r}")
    elif hasattr(fig, "savefig"):
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    else:
        raise TypeError(f"not a matplotlib or plotly figure: {type(fig).__name__}")
    os.replace(tmp, path)
    return path
