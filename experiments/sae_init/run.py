"""How far should a TopK SAE's encoder start from the decoder's transpose?

Gao et al. 2024 ("Scaling and evaluating sparse autoencoders") start the encoder as the
transpose of a unit-row decoder. EleutherAI's sparsify, which follows that paper, starts the
encoder as ``nn.Linear``'s default (rows of norm ~1/sqrt(3)) and the decoder as its
normalised copy: the same directions, 1/sqrt(3) of the scale. SAELens starts both at norm
0.1. The scale sets how large the first reconstructions are: with unit decoder rows and a
tied start, k raw projections onto non-orthogonal directions over-shoot the input. This
experiment trains the library's TopK SAE (``hiddenlens.sae.train``, every other setting its default)
on real activations at several ``TrainConfig.encoder_init_scale`` values, k and seeds, and
reports the held-out FVU (rows not trained on) at the end, the same for a run of 5% of the
tokens (how fast it starts), and the dead-latent fraction. The default is chosen from this table.

    python -m experiments.sae_init.run --out runs/sae_init [--store runs/demo/store]
        [--hook encoder.layer.3] [--fast]

``--store`` defaults to the demo's store (``make demo`` writes it); ``--fast`` trains tiny
SAEs on a planted dictionary instead (the test).
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

SCALES = (1.0, 0.75, 1 / math.sqrt(3), 0.4, 0.25)


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/sae_init"))
    ap.add_argument("--store", type=Path, default=Path("runs/demo/store"))
    ap.add_argument("--hook", default="encoder.layer.3")
    ap.add_argument("--architecture", default="topk", help="a TopK-family architecture")
    ap.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    ap.add_argument("--ks", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--d-sae", type=int, default=1536)
    ap.add_argument("--tokens", type=int, default=600_000, help="training rows per SAE")
    ap.add_argument("--held-out", type=int, default=10_000, help="last rows, never trained on")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--fast", action="store_true", help="tiny planted data (for the test)")
    args = ap.parse_args(argv)
    if args.fast:
        args.scales, args.ks, args.seeds = [1.0, 0.25], [4], [0]
        args.d_sae, args.tokens, args.held_out = 64, 16_384, 2048
    if any(s <= 0 for s in args.scales):
        ap.error(f"--scales must be > 0, got {args.scales}")
    from hiddenlens.sae import registry

    try:
        topk = registry.facts(args.architecture)["topk_family"]
    except ValueError as err:
        ap.error(str(err))
    if not topk or registry.get(args.architecture).pair_role is not None:
        ap.error(f"--architecture must be a single-hook TopK-family SAE, got {args.architecture!r}")
    return args


def planted_rows(n: int, d: int = 32, n_feats: int = 64, seed: int = 0) -> np.ndarray:
    """Sparse non-negative combinations of unit directions plus an offset (the --fast data)."""
    g = np.random.default_rng(seed)
    feats = g.standard_normal((n_feats, d))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    coef = g.random((n, n_feats)) * (g.random((n, n_feats)) < 4 / n_feats)
    return (coef @ feats + 0.3 * g.standard_normal(d)).astype(np.float32)


def load_rows(args) -> np.ndarray:
    if args.fast:
        return planted_rows(args.tokens + args.held_out)
    from hiddenlens.store import ActivationStore

    if not args.store.exists():
        raise SystemExit(f"no store at {args.store}: run `make demo` first, or pass --store")
    store = ActivationStore.open(args.store)
    n = len(store)
    if n <= args.held_out:
        raise SystemExit(f"the store has {n} rows, not more than --held-out {args.held_out}")
    return np.asarray(store.rows(args.hook, 0, n), dtype=np.float32)


def one_run(rows_train: np.ndarray, test: torch.Tensor, args, scale: float, k: int, seed: int):
    """Held-out FVU after 5% of the steps and at the end, and the dead fraction, of one SAE."""
    from hiddenlens.sae import SAEConfig, TrainConfig, train
    from hiddenlens.sae.evaluation import reconstruction_metrics

    cfg = SAEConfig(d_in=rows_train.shape[1], d_sae=args.d_sae, architecture=args.architecture, k=k)
    out = {}
    for frac in (0.05, 1.0):
        tokens = max(4096, int(args.tokens * frac) // 4096 * 4096)
        tcfg = TrainConfig(total_tokens=tokens, lr=args.lr, seed=seed, encoder_init_scale=scale,
                           checkpoint_every=0, lr_decay_fraction=0.2)  # fmt: skip
        sae = train({args.hook: rows_train}, args.hook, cfg, tcfg, progress=False)
        with torch.no_grad():
            z = sae.encode(test)
            m = reconstruction_metrics(test, sae.decode(z))
        out["fvu_early" if frac < 1 else "fvu"] = m["fvu"]
        if frac == 1.0:
            out["dead_fraction"] = float(((z > 0).sum(0) == 0).float().mean())
    return out


def _table(rows: list[dict], scales) -> str:
    lines = ["| k | encoder_init_scale | held-out FVU (mean over seeds) | FVU of a 5%-length run | dead latents |",
             "|---|---|---|---|---|"]  # fmt: skip
    for k in sorted({r["k"] for r in rows}):
        for s in scales:
            rs = [r for r in rows if r["k"] == k and r["scale"] == s]
            f = [r["fvu"] for r in rs]
            lines.append(
                f"| {k} | {s:.3f} | {np.mean(f):.4f} ± {np.std(f):.4f} (n={len(f)}) | "
                f"{np.mean([r['fvu_early'] for r in rs]):.4f} | "
                f"{np.mean([r['dead_fraction'] for r in rs]):.3f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    from hiddenlens._io import write_json, write_text

    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = load_rows(args)
    train, test = rows[: -args.held_out], torch.from_numpy(rows[-args.held_out :])
    results, t0 = [], time.perf_counter()
    for k in args.ks:
        for seed in args.seeds:
            for scale in args.scales:
                r = one_run(train, test, args, scale, k, seed)
                results.append({"k": k, "seed": seed, "scale": scale, **r})
                logger.info("k %d seed %d scale %.3f: %s", k, seed, scale, r)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_json(args.out / "results.json", {"settings": settings, "runs": results,
                                           "seconds": time.perf_counter() - t0})  # fmt: skip
    table = _table(results, args.scales)
    write_text(args.out / "table.md", table + "\n")
    logger.info("%s", table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
