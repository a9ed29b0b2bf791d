"""Regenerate the README's screenshots: the demo report, its feature dashboard and the
comparison page of a small SAE sweep, each opened in headless Chromium.

    python docs/screenshots.py --demo runs/demo      # after `make demo` (or demo --fast)
        [--tinylm runs/tinylm/report]                # + the tinylm report, if run

The sweep trains a few SAEs (TopK at three k, BatchTopK and ReLU) on the demo store's
``encoder.layer.3`` for a short schedule, evaluates each (FVU, L0 and the spliced embedding
score inside MiniLM) and writes one sub-directory per SAE (``cfg.json`` + ``metrics.json``);
``compare_runs`` then draws their frontier. Shots land in ``docs/screenshots/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "docs" / "screenshots"
HOOK = "encoder.layer.3"
SWEEP = [
    ("topk", 8, None),
    ("topk", 16, None),
    ("topk", 32, None),
    ("batchtopk", 16, None),
    ("relu", None, 1.0),
    ("relu", None, 3.0),
]


def train_sweep(demo: Path, out: Path, texts: int = 48) -> Path:
    """Train and evaluate the sweep on the demo store; one sub-directory per SAE."""
    import hiddenlens
    from hiddenlens.corpus import demo_corpus
    from hiddenlens.sae import SAEConfig, TrainConfig, evaluate, train
    from hiddenlens.sae.io import save_sae
    from hiddenlens.store import ActivationStore

    store = ActivationStore.open(demo / "store")
    handle = hiddenlens.load_model("minilm")
    data = demo_corpus(max_docs=texts)
    d = store.d(HOOK)
    for arch, k, l1 in SWEEP:
        name = f"{arch}_k{k}" if k else f"{arch}_l1_{l1:g}"
        cfg = SAEConfig(d_in=d, d_sae=4 * d, architecture=arch, k=k, hook_point=HOOK)
        tcfg = TrainConfig(
            total_tokens=6 * len(store),
            batch_size=256,
            lr=3e-3,
            l1_coefficient=l1 or 5.0,
            checkpoint_every=10**9,
            log_every=10**9,
        )
        sae = train(store, HOOK, cfg, tcfg, out_dir=out / name / "train")
        metrics = evaluate(sae, store, HOOK, model=handle, data=data, max_rows=len(store))
        save_sae(sae, out / name)
        (out / name / "metrics.json").write_text(json.dumps(metrics, indent=2))
        logging.info("%s: FVU %.3f", name, metrics.get(f"sae/fvu/{HOOK}", float("nan")))
    return out


def main(argv=None) -> int:
    sys.path.insert(0, str(ROOT))
    from hiddenlens.report.compare import compare_runs
    from tests.report.browser import open_page

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "screenshots")
    parser.add_argument("--tinylm", type=Path, default=None, help="a tinylm analyze run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not (args.demo / "report.html").is_file():
        raise SystemExit(f"{args.demo} holds no demo run: run `make demo` first")
    SHOTS.mkdir(parents=True, exist_ok=True)
    open_page(args.demo / "report.html", screenshot=SHOTS / "report.png", size=(1200, 3200))
    open_page(
        sorted(args.demo.glob("sae_dashboard*.html"))[0],
        screenshot=SHOTS / "dashboard.png",
        size=(1200, 1600),
    )
    sweep = train_sweep(args.demo, args.work / "sweep")
    page = compare_runs([sweep], args.work / "comparison", title="SAE sweep on MiniLM " + HOOK)
    open_page(page, screenshot=SHOTS / "comparison.png", size=(1200, 2200))
    if args.tinylm is not None:
        open_page(args.tinylm / "report.html", screenshot=SHOTS / "tinylm_report.png",
                  size=(1200, 3200))  # fmt: skip
    sys.stdout.write(f"screenshots written to {SHOTS}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
