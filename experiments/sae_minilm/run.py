"""TopK and ReLU SAEs on one MiniLM layer: the L0-FVU frontier and spliced fidelity.

Caches all-MiniLM-L6-v2 activations of the bundled demo corpus (or reuses ``--store``),
trains TopK SAEs for several k and ReLU SAEs for several L1 weights on one layer, and
evaluates each (centred FVU, L0, dead fraction, and the cosine between spliced and clean
sentence embeddings). Writes a report with the L0-FVU frontier, the density histogram
and top-activating contexts of the best TopK SAE.

    python -m experiments.sae_minilm.run --out runs/sae_minilm [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hiddenlens import parse_key
from hiddenlens.sae import SAEConfig, TrainConfig, evaluate, train
from hiddenlens.sae.inspect import top_activating
from hiddenlens.viz.sae import plot_density_histogram, plot_l0_fvu, plot_top_activations


def _store(args, handle):
    from hiddenlens.store import ActivationStore

    if args.store:
        return ActivationStore.open(args.store)
    import hiddenlens
    from hiddenlens.corpus import demo_corpus

    texts = demo_corpus(max_docs=200 if args.quick else None)
    return hiddenlens.cache_activations(
        handle,
        texts,
        [args.hook],
        args.out / "store",
        max_rows=20_000 if args.quick else 60_000,
        seq_len=256,
        overwrite=True,
    )


def _grid(quick: bool) -> list[tuple[str, dict]]:
    ks = (8, 32) if quick else (4, 8, 16, 32, 64)
    l1s = (1.0, 4.0) if quick else (0.5, 1.0, 2.0, 4.0, 8.0)
    return [("topk", {"k": k}) for k in ks] + [("relu", {"l1": c}) for c in l1s]


def _train_one(args, store, handle, texts, arch: str, p: dict):
    """Train and evaluate one SAE; returns (frontier point, sae)."""
    n = len(store)
    cfg = SAEConfig(
        d_in=store.d(args.hook),
        d_sae=args.d_sae,
        architecture=arch,
        k=p.get("k"),
        model_id=handle.model_id,
    )
    tcfg = TrainConfig(
        total_tokens=min(n * (3 if args.quick else 10), 2_000_000),
        batch_size=2048,
        lr=2e-3 if arch == "topk" else 5e-3,
        l1_coefficient=p.get("l1", 0.0),
        lr_warmup_steps=20,
        l1_warmup_steps=50,
        dead_tokens=n,
        num_threads=args.threads,
    )
    label = f"{arch}_" + "_".join(f"{k}{v}" for k, v in p.items())
    sae = train(store, args.hook, cfg, tcfg, out_dir=args.out / "saes" / label, progress=True)
    m = evaluate(sae, store, args.hook, model=handle, data=texts)
    get = {parse_key(k)[1]: v for k, v in m.items()}
    keys = ("l0", "fvu", "dead_fraction", "embed_cos_spliced", "embed_cos_score")
    return {"label": arch, "name": label, **{k: get[k] for k in keys}}, sae


def _write_report(report, args, points, best, store, handle) -> None:
    sec = report.add_section("L0-FVU frontier")
    sec.add_figure(plot_l0_fvu(points), "l0_fvu")
    sec.add_table(points, caption="One row per trained SAE.")
    if best is None:
        return
    dens = best.feature_density_.numpy()
    sec2 = report.add_section("TopK k=32: features")
    sec2.add_figure(plot_density_histogram(dens), "density")
    lats = [int(i) for i in dens.argsort()[::-1][10:14]]
    tops = top_activating(best, store, args.hook, lats, n=10, tokenizer=handle.tokenizer)
    for lat, rows in tops.items():
        sec2.add_figure(plot_top_activations(rows, title=f"latent {lat}"), f"latent_{lat}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/sae_minilm"))
    ap.add_argument("--store", default=None, help="reuse an existing activation store")
    ap.add_argument("--hook", default="encoder.layer.3")
    ap.add_argument("--threads", type=int, default=1, help="torch threads while training")
    ap.add_argument("--d-sae", type=int, default=3072)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    import hiddenlens
    from hiddenlens.corpus import demo_corpus
    from hiddenlens.report import Report, write_json

    handle = hiddenlens.load_model("minilm")
    store = _store(args, handle)
    texts = demo_corpus(max_docs=64)
    points, best = [], None
    for arch, p in _grid(args.quick):
        point, sae = _train_one(args, store, handle, texts, arch, p)
        points.append(point)
        if arch == "topk" and p["k"] == 32:
            best = sae
    report = Report(f"SAEs on MiniLM {args.hook}", config=vars(args) | {"out": str(args.out)})
    _write_report(report, args, points, best, store, handle)
    write_json(args.out / "frontier.json", points, indent=2)
    sys.stdout.write(f"report: {report.write(args.out)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
