"""Attribution evaluation with exact ground truth: DiFull / GridPG with ML-Att and AggAtt, and ChaosMining.

Part 1 reproduces the evaluation of Rao, Böhle & Schiele, "Better Understanding Differences in
Attribution Methods via Systematic Evaluations" (2022) on scikit-learn digits: a small CNN is
trained on single digits (upsampled to 16x16), then 2x2 grids of digits of distinct classes are
explained in two settings. GridPG: the CNN sees the whole grid (global average pooling, one
head); the score is the share of positive attribution in the cell of the explained class.
DiFull: every stage runs on each cell separately and each cell has its own head
(``DisconnectedGrid``), so mass outside the cell is provably wrong. Every method is evaluated at
the same three layers (ML-Att: input, middle, final conv stage), and AggAtt shows the average
map per percentile bin of the score. Part 2 follows Shi et al., "ChaosMining" (2024): MLPs are
trained on symbolic-functional data with a rising number of irrelevant features, and each
attribution method is scored by the share of relevant features in its top-k.

    python -m experiments.attribution_eval.run [--out runs/attribution_eval] [--fast]
        [--part all|grid|chaos]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hiddenlens import metric_key
from hiddenlens.attribution import (
    ChaosRecall,
    DisconnectedGrid,
    GridScores,
    aggatt,
    chaos_attributions,
    grid_cell_fractions,
    layer_attribution_maps,
    make_chaos_data,
    make_grid_images,
    occlusion,
    topk_recall,
    upsample_maps,
)

logger = logging.getLogger("attribution_eval")

LAYERS = {"input": "stages.0:input", "middle": "stages.1", "final": "stages.2"}
METHODS = ("grad", "ixg", "ig", "gradcam", "layercam")


@dataclass
class EvalConfig:
    """Settings of both parts (a few CPU minutes on a shared 2-core machine)."""

    cnn_epochs: int = 20
    cnn_lr: float = 3e-3
    n_grids: int = 200  # 2x2 grids of distinct classes
    cells: tuple[int, ...] = (0, 3)  # heads explained: top-left and bottom-right, as the paper
    ig_steps: int = 10
    occlusion_window: int = 4  # pixels (cells are 16x16)
    chaos_levels: tuple[int, ...] = (5, 20, 100, 400)  # irrelevant features
    chaos_relevant: int = 5
    chaos_train: int = 2000
    chaos_test: int = 500
    chaos_epochs: int = 150
    chaos_function: str = "mixed"
    seeds: tuple[int, ...] = (0, 1, 2)
    lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.n_grids < 50:
            raise ValueError(f"n_grids must be >= 50 so every AggAtt bin is filled, got {self.n_grids}")
        if not set(self.cells) <= {0, 1, 2, 3} or 0 not in self.cells:
            raise ValueError(f"cells must be 2x2 grid cells including 0 (AggAtt), got {self.cells}")
        if not self.seeds or min(self.chaos_levels) < 0:
            raise ValueError("need at least one seed and non-negative chaos_levels")


# ---------------------------------------------------------------- part 1: grids


def digits_16(seed: int):
    """sklearn digits in [0, 1], bilinearly upsampled to 16x16; (x [N,1,16,16], y [N])."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    x = nn.functional.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)
    return x, torch.tensor(d.target)


def cnn_parts(seed: int) -> tuple[list[nn.Module], nn.Module]:
    """Three conv stages (16x16 -> 16x16 -> 8x8 -> 4x4) and a GAP + linear head."""
    torch.manual_seed(seed)
    stages = [
        nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU()),
        nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
        nn.Sequential(nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)),
    ]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    return stages, head


def fit(model: nn.Module, x, y, *, epochs: int, lr: float, seed: int, loss=None, batch: int = 64):
    """Adam on mini-batches; cross-entropy unless ``loss`` is given."""
    loss = loss or nn.functional.cross_entropy
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), batch):
            idx = perm[i : i + batch]
            opt.zero_grad()
            loss(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def grid_settings(cfg: EvalConfig, seed: int):
    """Train the CNN; return the two settings' models, the grids, and the test accuracy."""
    x, y = digits_16(seed)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    tr, te = perm[:1400], perm[1400:]
    stages, head = cnn_parts(seed)
    single = nn.Sequential(*stages, head)
    fit(single, x[tr], y[tr], epochs=cfg.cnn_epochs, lr=cfg.cnn_lr, seed=seed)
    with torch.no_grad():
        pred = single(x[te]).argmax(1)
    acc = float((pred == y[te]).float().mean())
    ok = te[pred == y[te]]  # grids are built from correctly classified test digits, as the paper
    grids = make_grid_images(x[ok], y[ok].numpy(), n=cfg.n_grids, grid=(2, 2), seed=seed)
    connected = nn.Sequential(OrderedDict(stages=nn.Sequential(*stages), head=head)).eval()
    models = {"gridpg": connected, "difull": DisconnectedGrid(stages, head, (2, 2)).eval()}
    return models, grids, acc


def _targets(setting: str, model, labels: np.ndarray, cell: int) -> torch.Tensor:
    lab = torch.as_tensor(labels[:, cell])
    if setting == "difull":
        return model.target_index(cell, lab, n_classes=10)
    return lab


def score_setting(setting: str, model, grids, cfg: EvalConfig):
    """GridScores over all layers and methods (``cfg.cells`` of every grid) and cell-0 maps."""
    scores: dict[str, dict[str, list]] = {la: {} for la in LAYERS}
    cell0: dict[str, np.ndarray] = {}
    size = tuple(grids.x.shape[-2:])
    for cell in cfg.cells:
        t = _targets(setting, model, grids.labels, cell)
        for la, hook in LAYERS.items():
            maps = layer_attribution_maps(model, grids.x, hook, target=t, ig_steps=cfg.ig_steps)
            if la == "input":
                w = cfg.occlusion_window
                occ = occlusion(model, grids.x, window=(1, w, w), strides=(1, w, w), target=t)
                maps["occlusion"] = occ.attributions.sum(1)
            for m, a in maps.items():
                up = upsample_maps(a, size)  # the paper scores after bilinear upsampling
                scores[la].setdefault(m, []).append(grid_cell_fractions(a, (2, 2), cell))
                if la != "input":
                    scores.setdefault(f"{la}_bilinear", {}).setdefault(m, []).append(
                        grid_cell_fractions(up, (2, 2), cell)
                    )
                if cell == 0:
                    cell0[f"{m}@{la}"] = up.numpy()
    joined = {la: {m: np.concatenate(v) for m, v in by.items()} for la, by in scores.items()}
    return GridScores(setting, joined), cell0


def grid_section(report, cfg: EvalConfig, seed: int) -> tuple[dict[str, float], dict]:
    from hiddenlens.viz.attribution_eval import plot_aggatt, plot_layer_method_scores

    t0 = time.perf_counter()
    models, grids, acc = grid_settings(cfg, seed)
    metrics = {metric_key("attribution", "cnn_test_acc"): acc}
    means, aggs = {}, {}
    sec = report.add_section("DiFull and GridPG on digit grids (ML-Att, AggAtt)", text=_GRID_TEXT)
    for setting, model in models.items():
        gs, cell0 = score_setting(setting, model, grids, cfg)
        metrics.update(gs.to_metrics())
        means[setting] = gs.mean()
        sec.add_figure(
            plot_layer_method_scores(
                means[setting], ylabel=f"{setting} score", chance=0.25,
                title=f"{setting}: positive mass in the explained cell",
            ),
            f"{setting}_by_layer",
            caption=f"{setting} score per method at each layer (uniform = 0.25)",
        )
        show = ["grad@input", "ixg@input", "ig@input", "occlusion@input", "ixg@final",
                "gradcam@final"]
        binned = {k: aggatt(cell0[k], grid_cell_fractions(cell0[k], (2, 2), 0)) for k in show}
        aggs[setting] = binned
        sec.add_figure(
            plot_aggatt(
                {k: b.maps for k, b in binned.items()},
                bin_labels=next(iter(binned.values())).labels(),
                box=(0, 0, 16, 16),
                scores={k: b.scores for k, b in binned.items()},
                title=f"AggAtt, {setting}, head of the top-left cell",
            ),
            f"{setting}_aggatt",
            caption="mean normalised positive map per percentile bin (best first) and its score",
        )
    rows = [
        {"setting": s, "layer": la, **{m: round(v, 3) for m, v in by.items()}}
        for s, per in means.items()
        for la, by in per.items()
    ]
    sec.add_table(rows, caption=f"mean score over {len(cfg.cells) * len(grids)} explained cells")
    sec.add_metrics(metrics)
    logger.info("grid part done in %.0f s (CNN test acc %.3f)", time.perf_counter() - t0, acc)
    return metrics, {"means": means, "acc": acc}


_GRID_TEXT = (
    "A CNN (three 3x3 conv stages, GAP + linear head) is trained on single scikit-learn digits "
    "upsampled to 16x16; 2x2 grids of correctly classified test digits of four distinct classes "
    "are explained at the top-left and bottom-right cells. GridPG: the CNN sees the whole 32x32 grid; DiFull: every stage "
    "runs on each cell separately and each cell has its own head, so its logit cannot depend on "
    "the other cells. Score = share of positive attribution in the explained cell, computed at "
    "the layer's own resolution (cells are aligned with the feature map), and, as the paper "
    "does, after bilinear upsampling to the image (rows *_bilinear). Layers: input, middle "
    "(stage 1 output, 8x8 per cell), final (stage 2 output, 4x4 per cell). Occlusion: 4x4 "
    "windows at the input only."
)

# ---------------------------------------------------------------- part 2: ChaosMining


def _r2(pred: np.ndarray, y: np.ndarray) -> float:
    return float(1 - np.mean((pred - y) ** 2) / np.var(y))


def chaos_model(cfg: EvalConfig, n_noise: int, seed: int, *, fan_in: int | None = None):
    """Data and a trained MLP at one noise level: (data, mlp, test x, test R^2).

    fan_in: None keeps PyTorch's default init of the first layer (uniform +-1/sqrt(d), so an
    irrelevant feature's weights shrink as features are added); an int draws it as if the
    layer had that many inputs at every level (the control of ``chaos_floor``).
    """
    if fan_in is not None and (not isinstance(fan_in, int) or isinstance(fan_in, bool) or fan_in < 1):
        raise ValueError(f"fan_in must be None or an int >= 1, got {fan_in!r}")
    n = cfg.chaos_train + cfg.chaos_test
    data = make_chaos_data(
        n, n_relevant=cfg.chaos_relevant, n_noise=n_noise, function=cfg.chaos_function, seed=seed
    )
    x, y = torch.tensor(data.x), torch.tensor(data.y)
    tr, te = slice(0, cfg.chaos_train), slice(cfg.chaos_train, n)
    torch.manual_seed(seed)
    d = data.n_features
    mlp = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1),
                        nn.Flatten(0))
    if fan_in is not None:
        with torch.no_grad():
            mlp[0].weight.uniform_(-(fan_in**-0.5), fan_in**-0.5)
    fit(mlp, x[tr], y[tr], epochs=cfg.chaos_epochs, lr=cfg.lr, seed=seed,
        loss=nn.functional.mse_loss, batch=256)
    with torch.no_grad():
        r2 = _r2(mlp(x[te]).numpy(), data.y[te])
    return data, mlp, x[te], r2


def chaos_level(cfg: EvalConfig, n_noise: int, seed: int) -> tuple[dict[str, float], float, float]:
    """Train one MLP at one noise level; (recall per method, chance, test R^2)."""
    data, mlp, x_test, r2 = chaos_model(cfg, n_noise, seed)
    attrs = chaos_attributions(mlp, x_test)
    recall = {m: float(topk_recall(a, data.relevant).mean()) for m, a in attrs.items()}
    return recall, data.chance, r2


def chaos_section(report, cfg: EvalConfig) -> tuple[dict[str, float], ChaosRecall]:
    from hiddenlens.viz.attribution_eval import plot_recall_vs_noise

    t0 = time.perf_counter()
    per_level, chance, fits = [], [], []
    for lv in cfg.chaos_levels:
        runs = [chaos_level(cfg, lv, s) for s in cfg.seeds]
        per_level.append({m: [r[0][m] for r in runs] for m in runs[0][0]})
        chance.append(runs[0][1])
        fits.append(float(np.mean([r[2] for r in runs])))
        logger.info("chaos n_noise=%d: R2 %.3f %s", lv, fits[-1],
                    {m: round(float(np.mean(v)), 3) for m, v in per_level[-1].items()})
    res = ChaosRecall.from_levels(cfg.chaos_levels, per_level, chance, fits)
    sec = report.add_section(
        "ChaosMining: recall of the relevant features under rising noise",
        text=(
            f"y = {cfg.chaos_function}({cfg.chaos_relevant} relevant features) + N(0, 0.01^2); "
            "features clip(N(0, 0.33^2), -1, 1), relevant ones at random positions; MLP "
            f"d-64-64-1 trained {cfg.chaos_epochs} epochs on {cfg.chaos_train} examples per "
            f"level and seed ({len(cfg.seeds)} seeds); recall = share of the top-"
            f"{cfg.chaos_relevant} features by |attribution| (test set) that are relevant."
        ),
    )
    sec.add_figure(
        plot_recall_vs_noise(
            {m: r for m, r in res.recall.items()}, levels=list(cfg.chaos_levels), chance=chance
        ),
        "chaos_recall",
        caption="top-k recall per method (mean over seeds); ± sd over seeds and test R^2 in the table",
    )
    sec.add_table(
        [
            {"irrelevant": lv, "R2": round(fits[i], 3), "chance": round(chance[i], 3),
             **{m: _pm(res, m, i) for m in res.recall}}
            for i, lv in enumerate(cfg.chaos_levels)
        ],
        caption="per noise level",
    )
    logger.info("chaos part done in %.0f s", time.perf_counter() - t0)
    return res.to_metrics(), res


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/attribution_eval")
    parser.add_argument("--fast", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the grid part")
    parser.add_argument("--part", choices=("all", "grid", "chaos"), default="all",
                        help="run both parts (default) or one")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    cfg = EvalConfig()
    if args.fast:
        cfg = dataclasses.replace(
            cfg, cnn_epochs=6, n_grids=50, ig_steps=4, cells=(0,), chaos_levels=(5, 50), chaos_train=300,
            chaos_test=100, chaos_epochs=10, seeds=(0,),
        )
    from hiddenlens.report import Report

    report = Report("Attribution evaluation: DiFull, ML-Att, AggAtt, ChaosMining",
                    config=dataclasses.asdict(cfg))
    t0 = time.perf_counter()
    metrics, grid, chaos = {}, None, None
    if args.part in ("all", "grid"):
        metrics, grid = grid_section(report, cfg, args.seed)
    if args.part in ("all", "chaos"):
        chaos_metrics, chaos = chaos_section(report, cfg)
        metrics.update(chaos_metrics)
    report.add_metrics(metrics)
    path = report.write(args.out)
    print(summary(grid, chaos))
    print(f"report: {path}  ({time.perf_counter() - t0:.0f} s)")
    return metrics


def _pm(res: ChaosRecall, method: str, i: int) -> str:
    """``mean ± sd`` over seeds (just the mean for one seed)."""
    mean = f"{res.recall[method][i]:.3f}"
    return mean if res.sd is None else f"{mean} ± {res.sd[method][i]:.3f}"


def summary(grid: dict | None, chaos: ChaosRecall | None) -> str:
    """The printed tables of the parts that ran (the README quotes them)."""
    lines = []
    if grid is not None:
        methods = [*METHODS, "occlusion"]
        lines += [f"CNN single-digit test accuracy {grid['acc']:.3f}", "",
                  "| setting | layer | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 2) + "|"]
        for setting, per in grid["means"].items():
            for la, by in per.items():
                cells = [f"{by[m]:.3f}" if m in by else "" for m in methods]
                lines.append(f"| {setting} | {la} | " + " | ".join(cells) + " |")
    if chaos is None:
        return "\n".join(lines)
    lines += ["", "| irrelevant | R2 | chance | " + " | ".join(chaos.recall) + " |",
              "|---" * (len(chaos.recall) + 3) + "|"]
    for i, lv in enumerate(chaos.levels):
        cells = [_pm(chaos, m, i) for m in chaos.recall]
        lines.append(f"| {lv:g} | {chaos.fit[i]:.3f} | {chaos.chance[i]:.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
