"""Write a figure to disk (the one viz function with a side effect), atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hiddenlens._io import atomic_write, write_text


def is_plotly(fig: Any) -> bool:
    return type(fig).__module__.startswith("plotly")


def save_figure(fig: Any, path: str | Path, *, dpi: int = 150) -> Path:
    """Save a matplotlib Figure (.png/.svg/.pdf) or a plotly figure (.html/.json)."""
    path = Path(path)
    if is_plotly(fig):
        if path.suffix == ".json":
            return write_text(path, fig.to_json())
        if path.suffix == ".html":
            return write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))
        raise ValueError(f"plotly figures save as .html or .json, not {path.suffix!r}")
    if not hasattr(fig, "savefig"):
        raise TypeError(f"not a matplotlib or plotly figure: {type(fig).__name__}")
    fmt = path.suffix.lstrip(".") or "png"
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=fmt))
