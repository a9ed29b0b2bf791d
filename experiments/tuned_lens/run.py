"""Tuned lens vs logit lens on the tinylm model (Belrose et al. 2023, "Eliciting Latent
Predictions from Transformers with the Tuned Lens").

    python -m experiments.tuned_lens.run --model runs/tinylm/model --out runs/tuned_lens [--fast]

The paper's claim: decoding each layer's residual through a learned affine translator into
the last layer's basis (tuned lens) gives predictions closer to the model's final
distribution (lower KL) and better next-token perplexity than decoding it as is (logit lens),
at every layer and most of all at early ones. Here: the 4-layer GPT-2 of
``experiments/tinylm`` (trained on the first 95% of the demo corpus); the residuals after
the embeddings (``transformer.drop``) and after each block (``transformer.h.N``) are cached
for training documents (lens training) and for the 5% of documents the model never saw
(scoring). The translators use the paper's recipe (SGD with Nesterov momentum, lr 1.0
decayed linearly, weight decay 1e-3 on A - I, 250 steps), once per seed. Writes
metrics.json, figures/ and report.md (what reproduced, with the settings).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

HOOKS = ["transformer.drop", "transformer.h.*"]
TRAIN_SHARE = 0.95  # experiments/tinylm/train.py trains on this share of the demo corpus


def cache(model: str, texts: list[str], out: Path, max_rows: int, seq_len: int):
    from hiddenlens.store import cache_activations

    return cache_activations(model, texts, HOOKS, out, seq_len=seq_len, max_rows=max_rows,
                             batch_size=16)  # a complete store of the same run is reused


def fit_seeds(args, train_store, test_store):
    """One LensComparison per seed on the held-out store (the logit lens is seed-free)."""
    from hiddenlens.attribution import TunedLens, lens_decoder, next_token_ids

    decoder = lens_decoder(args.model)
    nxt = next_token_ids(test_store.meta)
    results, seconds = [], []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        lens = TunedLens(decoder, n_steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                         seed=seed).fit(train_store)
        seconds.append(time.perf_counter() - t0)
        results.append(lens.evaluate(test_store, next_tokens=nxt))
        logging.info("seed %d: tuned KL %s (%.0f s)", seed, np.round(results[-1].kl_tuned, 3),
                     seconds[-1])
    return results, seconds


def summary(results) -> dict:
    """Per layer: logit lens, tuned lens mean and spread over seeds, for KL and perplexity."""
    stack = lambda name: np.stack([getattr(r, name) for r in results])  # noqa: E731
    first = results[0]
    return {
        "hooks": first.hooks,
        "kl_logit": first.kl_logit, "kl_tuned": stack("kl_tuned").mean(0),
        "kl_tuned_min": stack("kl_tuned").min(0), "kl_tuned_max": stack("kl_tuned").max(0),
        "ppl_logit": first.ppl_logit, "ppl_tuned": stack("ppl_tuned").mean(0),
        "ppl_tuned_max": stack("ppl_tuned").max(0), "ppl_final": first.ppl_final,
        "n_rows": first.n_rows, "n_tokens": first.n_tokens,
    }


def metrics_of(s: dict, results) -> dict:
    from hiddenlens._keys import metric_key

    out = results[0].to_metrics()  # logit lens and model perplexity; tuned: the seed mean
    for i, h in enumerate(s["hooks"]):
        out[metric_key("attribution", "tuned_lens_kl", h)] = float(s["kl_tuned"][i])
        out[metric_key("attribution", "tuned_lens_kl_seed_max", h)] = float(s["kl_tuned_max"][i])
        out[metric_key("attribution", "tuned_lens_ppl", h)] = float(s["ppl_tuned"][i])
        out[metric_key("attribution", "tuned_lens_ppl_seed_max", h)] = float(s["ppl_tuned_max"][i])
    return out


def verdict(s: dict) -> tuple[str, list[str]]:
    """Whether the claim reproduces: every layer before the last, in every seed (max)."""
    inner = slice(0, len(s["hooks"]) - 1)
    kl_ok = bool(np.all(s["kl_tuned_max"][inner] < s["kl_logit"][inner]))
    ppl_ok = bool(np.all(s["ppl_tuned_max"][inner] < s["ppl_logit"][inner]))
    gain = s["kl_logit"][inner] - s["kl_tuned"][inner]  # nats the translator removes
    ratio = s["kl_logit"][inner] / np.maximum(s["kl_tuned"][inner], 1e-12)
    early = bool(gain[0] >= gain[1:].max()) if len(gain) > 1 else True
    lines = [
        f"- Lower KL than the logit lens at every layer before the last, in every seed: "
        f"**{'yes' if kl_ok else 'no'}**.",
        f"- Lower next-token perplexity at every layer before the last, in every seed: "
        f"**{'yes' if ppl_ok else 'no'}**.",
        f"- Largest gain at the earliest layer, in nats of KL removed "
        f"({', '.join(f'{x:.3f}' for x in gain)}): **{'yes' if early else 'no'}**; as a ratio "
        f"logit/tuned ({', '.join(f'{x:.1f}x' for x in ratio)}) the earliest layer gains "
        f"{'most' if ratio[0] >= ratio.max() else 'least' if ratio[0] <= ratio.min() else 'less'}.",
    ]
    ok = kl_ok and ppl_ok
    return ("reproduces" if ok and early else "partly reproduces" if ok else "does not reproduce"), lines


def report_lines(args, s, results, seconds, n_docs) -> list[str]:
    word, checks = verdict(s)
    rows = [
        f"| {h} | {s['kl_logit'][i]:.3f} | {s['kl_tuned'][i]:.3f} "
        f"({s['kl_tuned_min'][i]:.3f}–{s['kl_tuned_max'][i]:.3f}) | {s['ppl_logit'][i]:.1f} | "
        f"{s['ppl_tuned'][i]:.1f} |"
        for i, h in enumerate(s["hooks"])
    ]
    return [
        "# Tuned lens vs logit lens on tinylm",
        "",
        f"Claim (Belrose et al. 2023): the tuned lens is closer to the final distribution (KL) "
        f"and predicts the next token better (perplexity) than the logit lens at every layer, "
        f"most of all early. **Verdict: {word}.**",
        "",
        *checks,
        "",
        f"Model: `{args.model}` (4-layer GPT-2, d_model 128, vocab 4,096; model perplexity on "
        f"the held-out documents {s['ppl_final']:.1f}). Lens training: {n_docs[0]} training "
        f"documents, {args.train_rows} rows max; scoring: {s['n_rows']} rows of the "
        f"{n_docs[1]} held-out documents ({s['n_tokens']} with a next token). Translators: SGD "
        f"Nesterov 0.9, lr {args.lr} decayed linearly, weight decay 1e-3, {args.steps} steps of "
        f"{args.batch_size} rows, {args.seeds} seeds ({np.mean(seconds):.0f} s per fit on this "
        "shared 2-core CPU, under load from other jobs).",
        "",
        "| layer | KL logit lens | KL tuned lens (seed range) | ppl logit lens | ppl tuned lens |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "KL in nats, mean over held-out tokens; the last layer is the model's output (KL 0 "
        "for both lenses). Figures: `figures/lens_kl.png`, `figures/lens_ppl.png`.",
        "",
        f"Command: `python -m experiments.tuned_lens.run --model {args.model} --out {args.out}"
        f"{' --fast' if args.fast else ''}`.",
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="runs/tinylm/model")
    parser.add_argument("--out", type=Path, default=Path("runs/tuned_lens"))
    parser.add_argument("--train-rows", type=int, default=40_000)
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--lr", type=float, default=1.0)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--fast", action="store_true", help="at most 4,000 rows, 50 steps, 1 seed")
    args = parser.parse_args(argv)
    if args.fast:
        args.train_rows, args.steps, args.seeds = min(args.train_rows, 4_000), 50, 1
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from hiddenlens._io import write_json, write_text
    from hiddenlens.corpus import demo_corpus
    from hiddenlens.viz.lens import plot_lens_comparison
    from hiddenlens.viz.save import save_figure

    texts = demo_corpus()
    split = int(TRAIN_SHARE * len(texts))
    held = texts[split:][: 60 if args.fast else None]
    train_store = cache(args.model, texts[:split], args.out / "store_train", args.train_rows,
                        args.seq_len)
    test_store = cache(args.model, held, args.out / "store_test", None, args.seq_len)
    results, seconds = fit_seeds(args, train_store, test_store)
    s = summary(results)
    figs = args.out / "figures"
    save_figure(plot_lens_comparison(s, title="tinylm: KL to the final distribution (held out)"),
                figs / "lens_kl.png")
    save_figure(plot_lens_comparison(s, metric="perplexity", title="tinylm: next-token "
                                     "perplexity (held out)"), figs / "lens_ppl.png")
    n_docs = (len(np.unique(train_store.meta["sample_idx"])), len(held))
    lines = report_lines(args, s, results, seconds, n_docs)
    write_json(args.out / "metrics.json", {"metrics": metrics_of(s, results),
                                           "config": vars(args) | {"out": str(args.out)}})
    write_text(args.out / "report.md", "\n".join(lines) + "\n")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
