"""Why ChaosMining recall rose from 100 to 400 irrelevant features: the gradient noise floor.

    python -m experiments.attribution_eval.chaos_floor [--out runs/chaos_floor] [--fan-in 105]
        [--fast]

The sweep of ``run.py`` (Shi et al., "ChaosMining", 2024) found top-5 recall of the relevant
features *rising* from 100 to 400 irrelevant ones. This script trains the same MLPs (same data,
seeds and settings) and opens the recall up:

- per relevant term (``topk_hits``): how often each of z, z^2, sin(pi z), z^3, z is in the
  top 5. The strong terms are always found; recall moves only with the weak z^2 and z^3,
- the *noise floor*: per test example, the largest |saliency| over the irrelevant features,
  which a relevant feature must beat to be ranked; and the first layer's weight norm over an
  irrelevant feature's column, at init and after training,
- a control: the same sweep with the first layer initialised at one fixed fan-in for every
  width (PyTorch's default draws it uniform +-1/sqrt(d), so the irrelevant features' weights,
  hence their gradients, start smaller the more features there are).

Writes metrics.json and report.md; prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import numpy as np

from experiments.attribution_eval.run import EvalConfig, chaos_model
from hiddenlens.attribution import chaos_attributions, topk_hits, topk_recall

TERMS = ("z_1", "z_2^2", "sin(pi z_3)", "z_4^3", "z_5")  # the ``mixed`` terms, in order


def level_stats(cfg: EvalConfig, n_noise: int, seed: int, fan_in: int | None) -> dict:
    """Recall per method, saliency hits per term, noise floor and weight norms of one model."""
    data, mlp, x_test, r2 = chaos_model(cfg, n_noise, seed, fan_in=fan_in)
    # the init the model started from (chaos_model seeds torch itself), for its weight norms
    w0 = chaos_model(dataclasses.replace(cfg, chaos_epochs=0), n_noise, seed, fan_in=fan_in)[1]
    attrs = chaos_attributions(mlp, x_test)
    irr = np.setdiff1d(np.arange(data.n_features), data.relevant)
    sal = attrs["saliency"].abs().numpy()
    col = lambda m: m[0].weight.detach().norm(dim=0).numpy()[irr].mean()  # noqa: E731
    return {
        "r2": r2,
        **{f"recall_{m}": float(topk_recall(a, data.relevant).mean()) for m, a in attrs.items()},
        "hits": topk_hits(sal, data.relevant),
        "grad": sal[:, data.relevant].mean(0),
        "floor": float(sal[:, irr].max(1).mean()),
        "w_irr_init": float(col(w0)),
        "w_irr": float(col(mlp)),
    }


def sweep(cfg: EvalConfig, fan_in: int | None) -> dict[int, dict[str, np.ndarray]]:
    """{level: {stat: [seeds, ...]}} for every noise level of ``cfg``."""
    out = {}
    for lv in cfg.chaos_levels:
        runs = [level_stats(cfg, lv, s, fan_in) for s in cfg.seeds]
        out[lv] = {k: np.asarray([r[k] for r in runs], float) for k in runs[0]}
        logging.info("fan_in=%s n_noise=%d: saliency recall %.3f, hits %s, floor %.3f",
                     fan_in, lv, out[lv]["recall_saliency"].mean(),
                     np.round(out[lv]["hits"].mean(0), 2), out[lv]["floor"].mean())
    return out


def table(results: dict[str, dict], methods) -> list[str]:
    pm = lambda v: f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"  # noqa: E731
    head = ["init", "irrelevant", "R2", *methods,
            *[f"hit {t}" for t in TERMS], "floor", "abs grad z_2^2", "abs grad z_4^3",
            "W_irr init → trained"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for init, by in results.items():
        for lv, st in by.items():
            cells = [init, str(lv), f"{st['r2'].mean():.3f}",
                     *[pm(st[f"recall_{m}"]) for m in methods],
                     *[f"{h:.2f}" for h in st["hits"].mean(0)], pm(st["floor"]),
                     *[f"{st['grad'].mean(0)[j]:.3f}" for j in (1, 3)],
                     f"{st['w_irr_init'].mean():.3f} → {st['w_irr'].mean():.3f}"]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> dict[str, float]:
    from hiddenlens import metric_key
    from hiddenlens._io import write_json, write_text
    from hiddenlens.attribution.chaos import CHAOS_METHODS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/chaos_floor"))
    parser.add_argument("--fan-in", type=int, default=105, help="fixed fan-in of the control")
    parser.add_argument("--fast", action="store_true", help="tiny settings for a smoke test")
    args = parser.parse_args(argv)
    if args.fan_in < 1:  # before the sweep trains a single model
        parser.error(f"--fan-in must be >= 1, got {args.fan_in}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import torch

    torch.set_num_threads(1)
    cfg = EvalConfig()
    if args.fast:
        cfg = dataclasses.replace(cfg, chaos_levels=(5, 50), chaos_train=300, chaos_test=100,
                                  chaos_epochs=10, seeds=(0, 1))
    if cfg.chaos_function != "mixed":
        raise ValueError("the per-term columns assume chaos_function='mixed'")
    results = {"default": sweep(cfg, None), f"fan-in {args.fan_in}": sweep(cfg, args.fan_in)}
    metrics = {}
    for init, by in results.items():
        tag = "default" if init == "default" else "fixed"
        for lv, st in by.items():
            where = f"n_noise={lv}"
            for m in CHAOS_METHODS:
                metrics[metric_key("attribution", f"floor_{tag}_recall_{m}", where)] = float(
                    st[f"recall_{m}"].mean()
                )
            metrics[metric_key("attribution", f"floor_{tag}_floor", where)] = float(st["floor"].mean())
            for j, h in enumerate(st["hits"].mean(0)):
                metrics[metric_key("attribution", f"floor_{tag}_hit{j}", where)] = float(h)
    lines = table(results, CHAOS_METHODS)
    write_json(args.out / "metrics.json", {"metrics": metrics, "config": {"fan_in": args.fan_in}})
    write_text(args.out / "report.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return metrics


if __name__ == "__main__":
    main()
