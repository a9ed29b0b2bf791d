"""DiFull: grid images and models whose receptive fields are cut, so each output has exact ground truth.

Rao, Böhle & Schiele, "Better Understanding Differences in Attribution Methods via Systematic
Evaluations" (CVPR 2022 / TPAMI 2023), code ``sukrutrao/Attribution-Evaluation``. A grid image
puts ``rows x cols`` single images (of distinct classes) side by side. In the *GridPG* setting
an ordinary network sees the whole grid and the class of cell k is explained; in the *DiFull*
setting every stage of the network runs on each cell separately and each cell has its own
classification head, so the logit of head k cannot depend on any pixel outside cell k. The
DiFull score of an attribution for head k is the share of its positive mass inside cell k:
anything outside is provably wrong, whatever the model learned.

``DisconnectedGrid`` builds that model from the stages of a network trained on single images:
each stage is wrapped in ``PerCell`` (split the map into cells, run the stage on all cells as
one batch, stitch the outputs back into a grid), so every hook point ``stages.i`` holds a
grid-layout feature map and layer attribution (ML-Att) works at any stage. Its output is
``[batch, n_cells * n_classes]``: the logit of class c at head k is column ``k * n_classes + c``
(``target_index``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from hiddenlens._keys import metric_key

__all__ = [
    "GridImages",
    "GridScores",
    "PerCell",
    "DisconnectedGrid",
    "split_cells",
    "stitch_cells",
    "make_grid_images",
]


def _check_grid(grid: Sequence[int]) -> tuple[int, int]:
    g = tuple(int(v) for v in grid)
    if len(g) != 2 or min(g) < 1:
        raise ValueError(f"grid must be (rows, cols) with both >= 1, got {tuple(grid)}")
    return g


def split_cells(x: Tensor, grid: Sequence[int]) -> Tensor:
    """[B, C, H, W] -> [B * rows * cols, C, H / rows, W / cols], cells row-major per image."""
    rows, cols = _check_grid(grid)
    if x.ndim != 4:
        raise ValueError(f"expected a [batch, C, H, W] map, got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    if h % rows or w % cols:
        raise ValueError(f"a {h}x{w} map does not split into a {rows}x{cols} grid of equal cells")
    x = x.reshape(b, c, rows, h // rows, cols, w // cols).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b * rows * cols, c, h // rows, w // cols)


def stitch_cells(cells: Tensor, grid: Sequence[int]) -> Tensor:
    """Inverse of ``split_cells``: [B * rows * cols, C, h, w] -> [B, C, rows * h, cols * w]."""
    rows, cols = _check_grid(grid)
    k = rows * cols
    if cells.ndim != 4 or cells.shape[0] % k:
        raise ValueError(
            f"expected [batch * {k}, C, h, w] cell maps, got shape {tuple(cells.shape)}"
        )
    n, c, h, w = cells.shape
    x = cells.reshape(n // k, rows, cols, c, h, w).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(n // k, c, rows * h, cols * w)


class PerCell(nn.Module):
    """Run ``module`` on each grid cell separately (one batch) and stitch the outputs."""

    def __init__(self, module: nn.Module, grid: Sequence[int]):
        super().__init__()
        self.module = module
        self.grid = _check_grid(grid)

    def forward(self, x: Tensor) -> Tensor:
        return stitch_cells(self.module(split_cells(x, self.grid)), self.grid)


class DisconnectedGrid(nn.Module):
    """The DiFull model: ``stages`` run per cell, ``head`` classifies each cell on its own.

    stages: the feature stages of a network trained on single images (e.g. its conv blocks,
    each mapping [b, c, h, w] -> [b, c', h', w']); head: maps one cell's final feature map to
    ``n_classes`` logits (e.g. global average pooling + linear). The modules are shared, not
    copied. Hook points: ``stages.0:input`` (the image), ``stages.i`` (the grid-layout output
    of stage i). Output: [batch, n_cells * n_classes].
    """

    def __init__(self, stages: Sequence[nn.Module], head: nn.Module, grid: Sequence[int] = (2, 2)):
        super().__init__()
        stages = list(stages)
        if not stages:
            raise ValueError("DisconnectedGrid needs at least one stage")
        self.grid = _check_grid(grid)
        self.stages = nn.Sequential(*[PerCell(s, self.grid) for s in stages])
        self.head = head

    @classmethod
    def from_sequential(
        cls, model: nn.Sequential, stage_ends: Sequence[str], grid: Sequence[int] = (2, 2)
    ) -> DisconnectedGrid:
        """Cut an ``nn.Sequential`` into stages ending at the children named ``stage_ends``
        (in order); the children after the last one form the head. Hook ``stages.i`` of the
        result is the grid-layout output of child ``stage_ends[i]``."""
        if not isinstance(model, nn.Sequential):
            raise TypeError(f"from_sequential needs an nn.Sequential, got {type(model).__name__}")
        names = [n for n, _ in model.named_children()]
        ends = list(stage_ends)
        missing = [e for e in ends if e not in names]
        if missing or not ends:
            raise ValueError(f"stage_ends {ends} must name children of the model: {names}")
        pos = [names.index(e) for e in ends]
        if pos != sorted(set(pos)) or pos[-1] == len(names) - 1:
            raise ValueError(
                f"stage_ends {ends} must be distinct, in order, and leave at least one child "
                f"for the head (children: {names})"
            )
        children = list(model.children())
        starts = [0] + [p + 1 for p in pos[:-1]]
        stages = [nn.Sequential(*children[a : b + 1]) for a, b in zip(starts, pos)]
        return cls(stages, nn.Sequential(*children[pos[-1] + 1 :]), grid)

    @property
    def n_cells(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward(self, x: Tensor) -> Tensor:
        logits = self.head(split_cells(self.stages(x), self.grid))  # [B * K, n_classes]
        if logits.ndim != 2:
            raise ValueError(
                f"head must return [cells, n_classes] logits, got {tuple(logits.shape)}"
            )
        return logits.reshape(x.shape[0], -1)

    def target_index(
        self, cells: int | Sequence[int] | Tensor, labels: Sequence[int] | Tensor, n_classes: int
    ) -> Tensor:
        """[batch] output columns of class ``labels`` at head ``cells`` (one per example)."""
        lab = torch.as_tensor(labels).long().reshape(-1)
        cell = torch.as_tensor(cells).long().reshape(-1).expand(lab.numel())
        if cell.min() < 0 or cell.max() >= self.n_cells:
            raise ValueError(f"cell indices must be in 0..{self.n_cells - 1}, got {cell.tolist()}")
        if lab.min() < 0 or lab.max() >= n_classes:
            raise ValueError(f"labels must be in 0..{n_classes - 1}, got {lab.tolist()}")
        return cell * n_classes + lab


@dataclass
class GridImages:
    """x: [n, C, rows*h, cols*w]; labels, source: [n, rows*cols] class and source image of each
    cell (row-major)."""

    x: Tensor
    labels: np.ndarray
    source: np.ndarray
    grid: tuple[int, int]

    def __len__(self) -> int:
        return int(self.x.shape[0])


def make_grid_images(
    images: Tensor | np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    n: int,
    grid: Sequence[int] = (2, 2),
    seed: int = 0,
) -> GridImages:
    """``n`` grid images, each of ``rows*cols`` images of distinct classes drawn at random.

    images: [N, C, h, w] (or [N, h, w]); labels: [N] class of each image.
    """
    rows, cols = _check_grid(grid)
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, Tensor) else images)
    x = x[:, None] if x.ndim == 3 else x
    y = np.asarray(labels)
    if x.ndim != 4 or len(y) != x.shape[0]:
        raise ValueError(
            f"images must be [N, C, h, w] or [N, h, w] with one label each; got images "
            f"{tuple(x.shape)} and {len(y)} labels"
        )
    classes = np.unique(y)
    k = rows * cols
    if len(classes) < k:
        raise ValueError(f"a {rows}x{cols} grid needs >= {k} distinct classes, got {len(classes)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    by_class = {c: np.flatnonzero(y == c) for c in classes}
    cls = np.stack([rng.choice(classes, size=k, replace=False) for _ in range(n)])
    src = np.vectorize(lambda c: rng.choice(by_class[c]))(cls)
    cells = x[torch.as_tensor(src.reshape(-1))]  # [n * k, C, h, w], row-major per image
    return GridImages(stitch_cells(cells, (rows, cols)), y[src], src, (rows, cols))


@dataclass
class GridScores:
    """Per-example localisation scores of attribution methods at layers, in one setting.

    setting: "difull" or "gridpg" (or any name); scores: {layer: {method: [N] scores}}.
    """

    setting: str
    scores: dict[str, dict[str, np.ndarray]]

    def mean(self) -> dict[str, dict[str, float]]:
        return {
            layer: {m: float(np.nanmean(s)) for m, s in by.items()}
            for layer, by in self.scores.items()
        }

    def to_metrics(self) -> dict[str, float]:
        """``attribution/<setting>/<layer>/<method>``: the mean score."""
        return {
            metric_key("attribution", self.setting, f"{layer}/{m}"): v
            for layer, by in self.mean().items()
            for m, v in by.items()
        }
