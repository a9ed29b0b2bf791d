"""Do input gradients highlight discriminative features? Standard vs PGD-trained MLP on block digits.

Reproduces the BlockMNIST experiment of Shah, Jain & Netrapalli (NeurIPS 2021) on
scikit-learn digits: every 16x8 image stacks a digit block (the signal, which decides the
label) and a class-independent null block, in random order. Claim: input gradients of a
standard MLP often fail to concentrate on the signal block, those of an adversarially
(PGD) trained MLP do. Measured by the grid pointing game (share of |gradient| in the signal
block) and DiffROAR (accuracy of a model retrained on the top-k vs bottom-k gradient-ranked
pixels). A second section trains a small CNN on all ten digits and shows activation
maximisation (jitter, blur, L2 decay, frequency prior) and multifaceted visualisations.

    python experiments/attribution_blocks/run.py [--out runs/attribution_blocks] [--fast]
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

from hiddenlens import metric_key, parse_key
from hiddenlens.attribution import integrated_gradients, saliency
from hiddenlens.attribution.blocks import make_block_digits, pgd_attack
from hiddenlens.attribution.evaluation import deletion_insertion, diffroar, region_fraction
from hiddenlens.attribution.featvis import activation_maximisation, multifaceted_visualisation

logger = logging.getLogger("attribution_blocks")


@dataclass
class BlocksConfig:
    """Settings of the experiment (all sizes fit a 2-core CPU in a few minutes)."""

    classes: tuple[int, ...] = (0, 1)  # digit classes of the signal block
    copies: int = 6  # placements per digit image
    hidden: int = 256  # MLP width (two hidden layers)
    epochs: int = 30
    lr: float = 1e-3
    batch: int = 64
    eps: float = 1.5  # L2 radius of PGD (pixels in [0, 1], images 16x8)
    pgd_steps: int = 7
    ks: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)  # kept fractions for DiffROAR
    roar_epochs: int = 20  # epochs of each model retrained on masked data
    cnn_epochs: int = 15  # feature-visualisation CNN on all ten digits
    fv_steps: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if len(set(self.classes)) < 2:
            raise ValueError(f"classes needs >= 2 distinct digits, got {self.classes}")
        if self.eps <= 0 or self.pgd_steps < 1 or self.epochs < 1:
            raise ValueError("eps must be > 0, pgd_steps and epochs >= 1")
        if not all(0 < k < 1 for k in self.ks):
            raise ValueError(f"ks must lie in (0, 1), got {self.ks}")


def mlp(d_in: int, hidden: int, n_out: int) -> nn.Module:
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(d_in, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_out),
    )


def train(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    cfg: BlocksConfig,
    *,
    epochs: int,
    adversarial: bool = False,
    seed: int = 0,
) -> nn.Module:
    """Adam on cross-entropy; with ``adversarial`` every batch is replaced by its PGD attack."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), cfg.batch):
            xb, yb = x[perm[i : i + cfg.batch]], y[perm[i : i + cfg.batch]]
            if adversarial:
                xb = pgd_attack(model, xb, yb, eps=cfg.eps, steps=cfg.pgd_steps)
            model.train()
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _score(model: nn.Module, tr, te, signal: np.ndarray, cfg: BlocksConfig) -> tuple[dict, dict]:
    """Metrics of one trained MLP, and the arrays the figures need."""
    xtr, ytr = torch.tensor(tr.x), torch.tensor(tr.y)
    xte, yte = torch.tensor(te.x), torch.tensor(te.y)
    x_adv = pgd_attack(model, xte, yte, eps=cfg.eps, steps=20, seed=cfg.seed)
    grads_te = saliency(model, xte, target=yte).attributions  # |d logit_y / d x|
    grads_tr = saliency(model, xtr, target=ytr).attributions
    share = region_fraction(grads_te, signal, positive=True)
    ig = integrated_gradients(model, xte, target=yte, n_steps=32).attributions
    m = {
        "clean_acc": accuracy(model, xte, yte),
        "pgd_acc": accuracy(model, x_adv, yte),
        "pointing_game": float(np.nanmean(share)),
        "pointing_game_q10": float(np.nanquantile(share, 0.1)),
        "pointing_fail_rate": float(np.mean(share < 0.5)),  # more gradient on the null block
        "pointing_game_ig": float(np.nanmean(region_fraction(ig, signal, positive=True))),
    }
    curves = deletion_insertion(model, xte[:200], grads_te[:200], target=yte[:200], n_steps=16)
    m.update(curves.to_metrics())
    d, n_cls = xtr[0].numel(), int(ytr.max()) + 1
    m.update(
        diffroar(
            (tr.x, tr.y, te.x, te.y),
            (grads_tr.numpy(), grads_te.numpy()),
            fractions=cfg.ks,
            fit=lambda xs, ys: _retrain_predict(xs, ys, cfg, d, n_cls),
        )
    )
    arrays = {
        "grad": grads_te[:8, 0].numpy(),
        "ig": ig[:8, 0].numpy(),
        "share": share,
        "curves": curves,
    }
    return m, arrays


def block_section(report, cfg: BlocksConfig) -> dict[str, float]:
    """Train both MLPs, score their input gradients, add the report section; returns metrics."""
    from hiddenlens.viz.attribution import (
        plot_curves,
        plot_distributions,
        plot_image_attributions,
        plot_metric_by_k,
    )

    tr, te = make_block_digits(cfg.classes, copies=cfg.copies, seed=cfg.seed)
    xtr, ytr = torch.tensor(tr.x), torch.tensor(tr.y)
    signal = np.zeros((len(te), 16, 8), dtype=bool)
    for i, b in enumerate(te.signal_block):
        signal[i, 8 * b : 8 * b + 8] = True
    metrics, rows, maps, shares, roar, curves = {}, [], {}, {}, {}, {}
    for name, adv in (("standard", False), ("robust", True)):
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed)
        model = mlp(xtr[0].numel(), cfg.hidden, len(cfg.classes))
        train(model, xtr, ytr, cfg, epochs=cfg.epochs, adversarial=adv, seed=cfg.seed)
        m, arr = _score(model, tr, te, signal, cfg)
        scoped = {_scoped(k, name): v for k, v in m.items()}
        metrics.update(scoped)
        rows.append({"model": name, **_table_row(scoped)})
        maps[f"{name} |grad|"], maps[f"{name} IG"] = arr["grad"], arr["ig"]
        shares[name] = arr["share"]
        roar[name] = [m[f"attribution/diffroar/k={k:.2f}"] for k in cfg.ks]
        curves[f"{name} deletion"] = arr["curves"].deletion
        curves[f"{name} insertion"] = arr["curves"].insertion
        logger.info("%s MLP done in %.1f s: %s", name, time.perf_counter() - t0, rows[-1])
    sec = report.add_section(
        "Block digits: standard vs adversarially trained MLP",
        text=_TEXT.format(
            classes=cfg.classes, n_tr=len(tr), n_te=len(te), eps=cfg.eps, steps=cfg.pgd_steps
        ),
    )
    sec.add_table(rows, caption="per model (test set)")
    sec.add_metrics(metrics)
    titles = [
        f"y={c}, sig={'top' if b == 0 else 'bot'}" for c, b in zip(te.y[:8], te.signal_block[:8])
    ]
    sec.add_figure(
        plot_image_attributions(maps, images=te.x[:8, 0], titles=titles),
        "block_attributions",
        caption="test images and their attributions",
    )
    sec.add_figure(
        plot_distributions(shares, xlabel="share of |gradient| in the signal block", vline=0.5),
        "pointing_game",
        caption="per-image grid pointing game",
    )
    sec.add_figure(
        plot_metric_by_k(roar, ks=cfg.ks), "diffroar", caption="DiffROAR against the kept fraction"
    )
    sec.add_figure(
        plot_curves(curves, x=arr["curves"].fractions, ylabel="p(target)"),
        "deletion_insertion",
        caption="deletion / insertion curves of the |gradient| rankings",
    )
    return metrics


_TEXT = (
    "Signal digits {classes} in one 8x8 block, a fixed null square in the other, random order; "
    "{n_tr} train / {n_te} test images (test digits unseen in training). Robust model: PGD "
    "adversarial training, L2 eps={eps}, {steps} steps. Pointing game = mean share of |input "
    "gradient| inside the signal block (0.5 = no preference; q10 = its 10th percentile over "
    "images); fail rate = share of test images with more gradient mass on the null block. "
    "DiffROAR(k) = test accuracy of an MLP retrained on only the top-k pixels by |gradient| minus "
    "on only the bottom-k pixels (Shah et al. 2021); positive = the gradient ranks the "
    "discriminative pixels first."
)


def _retrain_predict(xs: np.ndarray, ys: np.ndarray, cfg: BlocksConfig, d: int, n_cls: int):
    torch.manual_seed(cfg.seed + 1)
    model = train(
        mlp(d, cfg.hidden // 2, n_cls),
        torch.tensor(xs),
        torch.tensor(ys),
        cfg,
        epochs=cfg.roar_epochs,
        seed=cfg.seed + 1,
    )
    return lambda xt: model(torch.tensor(xt)).argmax(1).detach().numpy()


def featvis_section(report, cfg: BlocksConfig) -> dict[str, float]:
    """Small CNN on sklearn digits: class visualisations and the facets of one class."""
    from sklearn.datasets import load_digits

    from hiddenlens.viz.attribution import plot_images

    digits = load_digits()
    x = torch.tensor(digits.images[:, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    torch.manual_seed(cfg.seed)
    cnn = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 16, 10),
    )
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
    tr, te = perm[:1400], perm[1400:]
    train(cnn, x[tr], y[tr], cfg, epochs=cfg.cnn_epochs, seed=cfg.seed)
    acc = accuracy(cnn, x[te], y[te])
    kw = {"shape": (1, 8, 8), "steps": cfg.fv_steps, "lr": 0.05, "jitter": 1, "l2_decay": 1e-2}
    classes = list(range(10))
    imgs = [
        activation_maximisation(cnn, "6", c, blur_every=4, seed=c, **kw).images[0, 0]
        for c in classes
    ]
    fimgs = [
        activation_maximisation(cnn, "6", c, frequency_prior=True, seed=c, **kw).images[0, 0]
        for c in classes
    ]
    probs = torch.softmax(cnn(torch.stack(imgs)[:, None]), 1).diagonal()
    unit = 1
    # few gentle steps, no blur: on an 8x8 input a long run drives every start to one optimum
    fkw = {"steps": max(10, cfg.fv_steps // 5), "lr": 0.02, "jitter": 1, "l2_decay": 1e-2}
    facets = multifaceted_visualisation(
        cnn, "6", unit, x[tr], n_facets=3, top_n=60, blur_every=0, **fkw
    )
    sec = report.add_section(
        "Feature visualisation: small CNN on digits",
        text=(
            "Activation maximisation of each class logit (jitter 1 px, Gaussian blur every 4 steps, "
            "L2 decay), then with a 1/f Fourier parameterisation (frequency prior); multifaceted: "
            f"the 60 training images that most activate class {unit} are clustered (PCA + k-means on "
            "the logit-layer input) and each facet is optimised from its cluster mean (a fifth of the "
            "steps, lower step size, no blur, so it stays in its facet)."
        ),
    )
    m = {"cnn_test_acc": acc, "fv_mean_softmax_of_target": float(probs.detach().mean())}
    m = {_scoped(k, "cnn"): v for k, v in m.items()}
    for i, f in enumerate(facets.facets):
        m[metric_key("attribution", "facet_size", f"cnn/{i}")] = float(len(f))
    sec.add_metrics(m)
    sec.add_figure(
        plot_images(np.stack(imgs), titles=[str(c) for c in classes]),
        "am_pixel",
        caption="pixel parameterisation + jitter/blur/L2",
    )
    sec.add_figure(
        plot_images(np.stack(fimgs), titles=[str(c) for c in classes]),
        "am_fourier",
        caption="frequency prior",
    )
    both = np.concatenate([facets.facet_means[:, 0].numpy(), facets.images[:, 0].numpy()])
    titles = [f"mean {i} (n={len(f)})" for i, f in enumerate(facets.facets)] + [
        f"facet {i}" for i in range(3)
    ]
    sec.add_figure(plot_images(both, titles=titles), "facets", caption=f"facets of class {unit}")
    return m


def _scoped(key: str, model: str) -> str:
    """A model's metric as a report key: ``clean_acc`` -> ``attribution/clean_acc/standard``;
    ``attribution/diffroar/k=0.10`` -> ``attribution/diffroar/standard/k=0.10``."""
    analyzer, metric, where = parse_key(key) if "/" in key else ("attribution", key, None)
    return metric_key(analyzer, metric, "/".join(p for p in (model, where) if p))


def _table_row(scoped: dict[str, float]) -> dict[str, float]:
    """The per-model scalars (no fraction k) of a model's scoped metrics, by metric name."""
    out = {}
    for key, v in scoped.items():
        _, metric, where = parse_key(key)
        if "/" not in where:
            out[metric] = round(v, 3)
    return out


def _is_headline(key: str) -> bool:
    metric = parse_key(key)[1]
    return metric in ("clean_acc", "pgd_acc", "pointing_game", "pointing_fail_rate") or (
        metric == "diffroar"
    )


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/attribution_blocks")
    parser.add_argument("--fast", action="store_true", help="tiny settings for a smoke test")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)  # tiny models: a second thread only adds sync overhead
    cfg = BlocksConfig(seed=args.seed)
    if args.fast:
        cfg = dataclasses.replace(
            cfg, copies=2, epochs=4, roar_epochs=3, cnn_epochs=2, fv_steps=20, ks=(0.1,)
        )
    from hiddenlens.report import Report

    report = Report("Attribution on block digits", config=dataclasses.asdict(cfg))
    t0 = time.perf_counter()
    metrics = block_section(report, cfg)
    metrics.update(featvis_section(report, cfg))
    headline = {k: v for k, v in metrics.items() if _is_headline(k)}
    report.add_metrics(headline)
    path = report.write(args.out)
    for name in ("standard", "robust"):
        scoped = {parse_key(k): v for k, v in headline.items()}
        parts = [
            f"{m}{'/' + w.split('/', 1)[1] if '/' in w else ''}={v:.3f}"
            for (_, m, w), v in scoped.items()
            if w.split("/", 1)[0] == name
        ]
        print(f"{name:>8}: " + "  ".join(parts))
    print(f"report: {path}  ({time.perf_counter() - t0:.0f} s)")
    return metrics


if __name__ == "__main__":
    main()
