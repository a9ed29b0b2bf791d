"""Figure functions: arrays and result dataclasses in, matplotlib or plotly figures out.

Nothing here shows or writes a figure except :func:`save_figure`.
"""

from hiddenlens.viz.save import save_figure
from hiddenlens.viz.style import PALETTE, apply_style, new_figure

__all__ = ["PALETTE", "apply_style", "new_figure", "save_figure"]
