"""Layer masking vs grey / black masking: missingness bias on a CNN trained on digits.

Balasubramanian & Feizi, "Towards Improved Input Masking for Convolutional Neural Networks"
(ICCV 2023): removing part of an image by painting it grey or black shows the CNN a pattern
it never saw in training, so its prediction moves even when the removed part carries no
evidence (missingness bias); *layer masking* (the mask applied at every layer, holes filled
from kept neighbours) moves it far less. Setting here: scikit-learn digits (8×8) placed at a
jittered central spot on a 20×20 canvas of smooth random texture (independent of the label, so the
background is uninformative by construction), a small CNN, and k×k squares removed from the
background only. Measured per masking method and k: |Δ logit| of the clean prediction,
KL(p_clean ‖ p_masked) and the prediction flip rate; and the occlusion maps each masking
gives, scored by the share of positive attribution on the digit (everything else is
irrelevant by construction).

    python -m experiments.input_masking.run --out runs/input_masking [--fast]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hiddenlens import metric_key
from hiddenlens.attribution import occlusion, region_fraction
from hiddenlens.attribution.masking import missingness_bias

logger = logging.getLogger("input_masking")
HOOKS = ["1", "3", "6"]  # post-ReLU conv maps of :func:`cnn`: where layer masking applies
#: The compared removals: name -> (masking method, layer-masking hooks). "layer" is the paper's
#: layer masking: fill at the conv maps and, at the map that feeds the global average pool,
#: pool over kept positions only; "layer_fillpool" also neighbour-fills that last map, so the
#: pool averages over filled positions too (an ablation of the masked pooling).
VARIANTS = {
    "black": ("black", ()),
    "grey": ("grey", ()),
    "neighbour": ("neighbour", ()),
    "layer": ("layer", {"1": "fill", "3": "fill", "6": "mean"}),
    "layer_fillpool": ("layer", {h: "fill" for h in HOOKS}),
}
CANVAS, DIGIT = 20, 8
CENTRE = (CANVAS - DIGIT) // 2  # the digit box's corner without jitter


@dataclass
class MaskingConfig:
    """Settings (the default run takes a few CPU minutes)."""

    epochs: int = 15
    lr: float = 3e-3  # Adam, cosine-annealed to 0 over the epochs
    batch: int = 64
    jitter: int = 1  # the digit's corner is CENTRE ± jitter (uniform)
    sizes: tuple[int, ...] = (2, 3, 4)  # side of the removed background square
    grey: float = 0.5
    n_att: int = 60  # test images whose occlusion maps are computed per masking
    window: int = 4
    stride: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch < 1 or not self.lr > 0:
            raise ValueError("epochs, batch >= 1 and lr > 0 required")
        if not 0 <= self.jitter <= CENTRE:
            raise ValueError(f"jitter must lie in 0..{CENTRE}, got {self.jitter}")
        band = CENTRE - self.jitter - 1  # background rows/columns always clear of the digit
        if not self.sizes or any(not 1 <= k <= band for k in self.sizes):
            raise ValueError(
                f"sizes must lie in 1..{band} (the background band at jitter {self.jitter}), "
                f"got {self.sizes}"
            )
        if not 1 <= self.stride <= self.window <= CANVAS:
            raise ValueError(f"need 1 <= stride <= window <= {CANVAS}")


def cnn() -> nn.Module:
    """Conv→BN→ReLU ×2, max-pool, Conv→BN→ReLU, global average pool, linear (ResNet-like)."""
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16)),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32)),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32)),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def texture(n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 20, 20] smooth random backgrounds in [0, 0.45] (blurred noise, min-max scaled)."""
    from scipy.ndimage import gaussian_filter

    g = gaussian_filter(rng.standard_normal((n, CANVAS, CANVAS)), sigma=(0, 2, 2), mode="wrap")
    lo, hi = g.min((1, 2), keepdims=True), g.max((1, 2), keepdims=True)
    return 0.45 * (g - lo) / (hi - lo)


def compose(
    digits: np.ndarray, rng: np.random.Generator, jitter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Digits [n, 8, 8] in [0, 1] pasted (pixel-wise max) on textures, corner CENTRE ± jitter.
    Returns images [n, 1, 20, 20] float32 and the digit boxes' corners [n, 2]."""
    n = digits.shape[0]
    img = texture(n, rng)
    at = CENTRE + rng.integers(-jitter, jitter + 1, size=(n, 2))
    for i, (r, c) in enumerate(at):
        win = img[i, r : r + DIGIT, c : c + DIGIT]
        img[i, r : r + DIGIT, c : c + DIGIT] = np.maximum(win, digits[i])
    return img[:, None].astype(np.float32), at


def background_square(at: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Keep masks [n, 1, 20, 20] (0 = removed): one k×k square per image placed uniformly
    among the positions that stay one pixel clear of the digit box; rows with no such
    position are all ones (nothing removed) and reported by the caller."""
    n = at.shape[0]
    keep = np.ones((n, 1, CANVAS, CANVAS), dtype=np.float32)
    for i, (r, c) in enumerate(at):
        ok = [
            (y, x)
            for y in range(CANVAS - k + 1)
            for x in range(CANVAS - k + 1)
            if y + k <= r - 1 or y >= r + DIGIT + 1 or x + k <= c - 1 or x >= c + DIGIT + 1
        ]
        if ok:
            y, x = ok[rng.integers(len(ok))]
            keep[i, 0, y : y + k, x : x + k] = 0
    return keep


def train_cnn(cfg: MaskingConfig, digits, y, rng) -> nn.Module:
    """Adam on CE (cosine schedule); every epoch draws fresh textures and placements."""
    torch.manual_seed(cfg.seed)
    model = cnn()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.epochs)
    yt = torch.as_tensor(y)
    for _ in range(cfg.epochs):
        x = torch.from_numpy(compose(digits, rng, cfg.jitter)[0])
        perm = torch.as_tensor(rng.permutation(len(y)))
        model.train()
        for s in range(0, len(y), cfg.batch):
            idx = perm[s : s + cfg.batch]
            loss = nn.functional.cross_entropy(model(x[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    return model.eval()


def frame(n: int, w: int) -> np.ndarray:
    """Keep masks [n, 1, 20, 20] removing the outer ``w`` pixels of the canvas (a blank border)."""
    keep = np.zeros((n, 1, CANVAS, CANVAS), dtype=np.float32)
    keep[:, :, w : CANVAS - w, w : CANVAS - w] = 1
    return keep


SHAPES = ("square", "frame")  # one k×k background square; the outer k-pixel border
_SHAPE_TEXT = {
    "square": "one k×k square of background removed",
    "frame": "the outer k pixels of the canvas removed",
}


def removal(shape: str, at: np.ndarray, k: int, rng) -> torch.Tensor:
    if shape == "square":
        return torch.from_numpy(background_square(at, k, rng))
    return torch.from_numpy(frame(len(at), k))


def bias_table(model, x, at, cfg: MaskingConfig, rng) -> tuple[dict, dict]:
    """Missingness-bias metrics per (method, shape, k), keyed ``<method>/<shape>=<k>``, and
    the curves {(shape, method, stat): [one value per k]} for the figures."""
    metrics, curves = {}, {}
    for shape in SHAPES:
        for k in cfg.sizes:
            keep = removal(shape, at, k, rng)
            for method, (kind, hooks) in VARIANTS.items():
                res = missingness_bias(model, x, keep, kind, hook_points=hooks, grey=cfg.grey)
                where = f"{method}/{shape}={k}"
                metrics.update(res.to_metrics(where))
                stats = {"dlogit": res.dlogit.mean(), "kl": res.kl.mean(), "flip": res.flip_rate}
                for stat, v in stats.items():
                    curves.setdefault((shape, method, stat), []).append(float(v))
                if k == max(cfg.sizes):
                    metrics.update(flip_target_share(res, where))
    return metrics, curves


def flip_target_share(res, where: str) -> dict[str, float]:
    """Share of flipped predictions that go to the single most common new class (near 1: the
    mask itself reads as one class, the class bias the paper reports for grey/black)."""
    new = res.pred_masked[res.pred_clean != res.pred_masked]
    top = np.bincount(new, minlength=10).max() / new.size if new.size else float("nan")
    return {metric_key("attribution", "flip_top_class_share", where): float(top)}


def occlusion_scores(model, x, at, cfg: MaskingConfig) -> tuple[dict, dict]:
    """Occlusion maps per masking on ``cfg.n_att`` images: share of positive attribution on the
    digit box (higher = less credit given to the irrelevant background)."""
    xa, ata = x[: cfg.n_att], at[: cfg.n_att]
    box = np.zeros((len(xa), CANVAS, CANVAS), dtype=bool)
    for i, (r, c) in enumerate(ata):
        box[i, r : r + DIGIT, c : c + DIGIT] = True
    with torch.no_grad():
        target = model(xa).argmax(1)
    kw = {"window": (1, cfg.window, cfg.window), "strides": (1, cfg.stride, cfg.stride)}
    settings = {
        "black": {"baseline": 0.0},
        "grey": {"baseline": cfg.grey},
        "neighbour": {"layer_mask_hooks": []},
        "layer": {"layer_mask_hooks": VARIANTS["layer"][1]},
        "layer_fillpool": {"layer_mask_hooks": VARIANTS["layer_fillpool"][1]},
    }
    metrics, maps = {}, {}
    for method, extra in settings.items():
        att = occlusion(model, xa, target=target, perturbations_per_eval=32, **kw, **extra)
        share = region_fraction(att.attributions, box, positive=True)
        metrics[metric_key("attribution", "occlusion_on_digit", method)] = float(np.nanmean(share))
        outside = att.attributions[:, 0].abs().numpy() * ~box
        metrics[metric_key("attribution", "occlusion_abs_background", method)] = float(
            outside.sum((1, 2)).mean() / (~box).sum((1, 2)).mean()
        )
        maps[method] = att.attributions[:6, 0].numpy()
    return metrics, maps


def build_report(cfg: MaskingConfig, acc: float, metrics: dict, curves: dict, maps: dict, x):
    from hiddenlens.report import Report
    from hiddenlens.viz.attribution import plot_image_attributions, plot_metric_by_k

    title = "Layer masking vs grey / black masking (digits on texture)"
    rep = Report(title, config=dataclasses.asdict(cfg))
    text = _SETUP.format(acc=acc, centre=CENTRE, **dataclasses.asdict(cfg))
    sec = rep.add_section("Setup and findings", text=text)
    sec.add_text(_findings(cfg, metrics))
    for shape in SHAPES:
        rows = []
        for method in VARIANTS:
            row = {"masking": method}
            for k in cfg.sizes:
                for name in ("dlogit", "kl", "flip_rate", "dprob"):
                    key = metric_key("attribution", f"missingness_{name}", f"{method}/{shape}={k}")
                    row[f"{name} k={k}"] = round(metrics[key], 4)
            rows.append(row)
        sec.add_table(rows, caption=f"missingness bias per masking method: {_SHAPE_TEXT[shape]}")
    names = ("occlusion_on_digit", "occlusion_abs_background")
    rows = [
        {"masking": m, **{n: round(metrics[metric_key("attribution", n, m)], 4) for n in names}}
        for m in VARIANTS
    ]
    sec.add_table(rows, caption="occlusion maps made with each masking")
    labels = {
        "dlogit": "mean |Δ logit| of the clean prediction",
        "kl": "mean KL(p_clean ‖ p_masked) (nats)",
        "flip": "flip rate",
    }
    for shape in SHAPES:
        for stat, label in labels.items():
            fig = plot_metric_by_k(
                {m: curves[(shape, m, stat)] for m in VARIANTS},
                ks=cfg.sizes,
                ylabel=label,
                xlabel=f"k ({_SHAPE_TEXT[shape]})",
                title=f"missingness bias ({shape}): {stat}",
            )
            sec.add_figure(fig, f"missingness_{shape}_{stat}")
    sec.add_figure(
        plot_image_attributions(
            {f"occlusion, {m}": v for m, v in maps.items()}, images=x[:6, 0].numpy()
        ),
        "occlusion_maps",
        caption="occlusion maps (window 4, stride 2) with each way of removing the window",
    )
    sec.add_metrics(metrics)
    return rep


_SETUP = (
    "scikit-learn digits: 1400 train / 397 test digits, each 8×8 digit pasted (pixel-wise max) "
    "with its corner at ({centre} ± {jitter}, {centre} ± {jitter}) on a 20×20 canvas of smooth "
    "random texture in [0, 0.45] (Gaussian-blurred noise, σ = 2 px), fresh placement and "
    "texture every epoch, so the background is uninformative by construction. CNN: conv 3×3 "
    "(16) → ReLU → conv (32) → ReLU → max-pool 2 → conv (32) → ReLU → global average pool → "
    "linear (each conv followed by BatchNorm); Adam lr {lr} cosine-annealed, {epochs} epochs, "
    "batch {batch}; test accuracy {acc:.3f}. Removed regions (never touching the digit): one "
    "k×k square per test image, placed uniformly among positions at least one pixel clear of "
    "the digit box, or a frame, the outer k pixels of the canvas (k = 4 removes 64% of the "
    "image). black = 0, grey = {grey}, neighbour = the hole filled from kept 3×3 neighbours at "
    "the input only, layer = layer masking (neighbour fill at the input and at the first two "
    "post-ReLU conv maps, the mask max-pooled to each map's resolution; the global average "
    "pool averages over kept positions of the last map only, as in the paper's masked "
    "pooling), layer_fillpool = the same but the last map is neighbour-filled too, so the pool "
    "also averages filled positions. Occlusion: {n_att} "
    "test images, window {window}, stride {stride}, each masking as the way to remove the "
    "window; occlusion_on_digit = share of positive attribution inside the 8×8 digit box, "
    "occlusion_abs_background = mean |attribution| per background pixel. dlogit = |Δ| of the "
    "clean predicted class's logit, dprob = signed change of its probability (> 0: more "
    "confident), flip_top_class_share (metrics) = share of flips that land on the single most "
    "common new class."
)


def _findings(cfg: MaskingConfig, m: dict) -> str:
    k = max(cfg.sizes)
    g = lambda name, w: m[metric_key("attribution", name, w)]  # noqa: E731
    parts = []
    for shape in SHAPES:
        cells = "; ".join(
            f"{meth} |Δlogit| {g('missingness_dlogit', f'{meth}/{shape}={k}'):.3f}, flips "
            f"{g('missingness_flip_rate', f'{meth}/{shape}={k}'):.3f}"
            for meth in VARIANTS
        )
        parts.append(f"{_SHAPE_TEXT[shape]} (k = {k}): {cells}")
    occ = ", ".join(f"{meth} {g('occlusion_on_digit', meth):.3f}" for meth in VARIANTS)
    return ". ".join(parts) + f". Share of positive occlusion attribution on the digit: {occ}."


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/input_masking")
    ap.add_argument("--fast", action="store_true", help="2 epochs, 2 sizes, 12 occlusion maps")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    cfg = MaskingConfig(seed=args.seed)
    if args.fast:
        cfg = dataclasses.replace(cfg, epochs=2, sizes=(2, 4), n_att=12)
    from sklearn.datasets import load_digits

    t0 = time.perf_counter()
    d = load_digits()
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(d.target))
    tr, te = order[:1400], order[1400:]
    digits = (d.images / 16.0).astype(np.float32)
    model = train_cnn(cfg, digits[tr], d.target[tr], rng)
    x_np, at = compose(digits[te], np.random.default_rng(cfg.seed + 1), cfg.jitter)
    x, y = torch.from_numpy(x_np), torch.as_tensor(d.target[te])
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    logger.info("CNN trained in %.1f s, test accuracy %.3f", time.perf_counter() - t0, acc)
    metrics = {metric_key("attribution", "test_acc", "cnn"): acc}
    bias, curves = bias_table(model, x, at, cfg, np.random.default_rng(cfg.seed + 2))
    metrics.update(bias)
    occ, maps = occlusion_scores(model, x, at, cfg)
    metrics.update(occ)
    metrics[metric_key("run", "seconds", "total")] = time.perf_counter() - t0
    rep = build_report(cfg, acc, metrics, curves, maps, x)
    rep.add_metrics(metrics)
    path = rep.write(args.out)
    _print_headline(cfg, acc, metrics)
    print(f"report: {path}  ({time.perf_counter() - t0:.0f} s)")
    return metrics


def _print_headline(cfg: MaskingConfig, acc: float, metrics: dict) -> None:
    print(f"test accuracy {acc:.3f}")
    for shape in SHAPES:
        print(f"{shape}: |dlogit| / KL / flip rate / signed dprob for k = {cfg.sizes}")
        for meth in VARIANTS:
            cells = [
                "/".join(
                    f"{metrics[metric_key('attribution', f'missingness_{s}', f'{meth}/{shape}={k}')]:.3f}"
                    for s in ("dlogit", "kl", "flip_rate", "dprob")
                )
                for k in cfg.sizes
            ]
            print(f"  {meth:14s} " + "  ".join(f"{c:27s}" for c in cells))
    occ = "  ".join(
        f"{m} {metrics[metric_key('attribution', 'occlusion_on_digit', m)]:.3f}" for m in VARIANTS
    )
    print(f"occlusion share on the digit: {occ}")


if __name__ == "__main__":
    main()
