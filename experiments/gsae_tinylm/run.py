"""Do gradient-TopK SAEs (g-SAEs) splice into a causal LM more faithfully than TopK SAEs?

Olmo et al., "Features that Make a Difference: Leveraging Gradients for Improved Dictionary
Learning": a g-SAE ranks latents by z * (1 + beta * |W_dec g|) during training, g the
gradient of the LM's loss at the SAE's input, and claims that at equal L0 its
reconstruction, spliced into the LM, raises the next-token CE loss (and the KL to the
clean next-token distribution) less than a TopK SAE's (Gao et al. 2024). This is the
paper's setting at small scale: the bundled causal LM tinylm (4-layer GPT-2, d_model 128,
``python -m experiments.tinylm.train``), its residual stream after a block
(``transformer.h.1`` by default), downstream loss = the LM's own next-token CE, whose
gradient at the hook is cached beside the activations. TopK and g-SAE share d_sae, k, the
token budget, seed (so initialisation and data order) and schedule. They are evaluated on
the LM's held-out documents (the 5% of the demo corpus neither the LM nor the SAEs saw)
with ``hiddenlens.sae.spliced``'s CE / KL (SAELens conventions) read per document; CE and
KL are token-weighted means; 95% percentile bootstrap CIs resample documents, the paired
difference g-SAE - TopK averaged over seeds inside each resample.

    python -m experiments.gsae_tinylm.run --model runs/tinylm/model --out runs/gsae_tinylm [--fast]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from experiments.gsae_tinylm import evaluate as ev

METHODS = ("topk", "gsae", "gsae_oracle")
LABELS = {
    "topk": "TopK",
    "gsae": "g-SAE (plain top-k at inference)",
    "gsae_oracle": "g-SAE (selection with the clean CE gradient)",
}


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("runs/gsae_tinylm"))
    ap.add_argument("--model", default="runs/tinylm/model", help="the causal LM (a path)")
    ap.add_argument("--fast", action="store_true", help="tiny settings (for the test)")
    ap.add_argument("--hook", default="transformer.h.1")
    ap.add_argument("--ks", type=int, nargs="+", default=[8, 16, 32])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--d-sae", type=int, default=1024, help="latents (8x d_model)")
    ap.add_argument("--tokens", type=int, default=300_000, help="training rows per SAE")
    ap.add_argument("--batch", type=int, default=2048, help="SAE batch (token rows)")
    ap.add_argument("--beta", type=float, default=1.0, help="g-SAE grad_beta")
    ap.add_argument("--train-docs", type=int, default=None, help="cap on training documents")
    ap.add_argument("--test-docs", type=int, default=None, help="cap on held-out documents")
    ap.add_argument("--n-boot", type=int, default=2000)
    args = ap.parse_args(argv)
    if args.fast:
        args.ks, args.seeds, args.d_sae, args.tokens, args.batch = [4, 8], [0], 64, 2048, 256
        args.train_docs, args.test_docs, args.n_boot = 24, 4, 200
    if min(args.ks) < 1 or max(args.ks) > args.d_sae or len(set(args.seeds)) < 1:
        raise ValueError(f"--ks must lie in [1, --d-sae={args.d_sae}], got {args.ks}")
    if not Path(args.model).is_dir():
        raise FileNotFoundError(
            f"--model {args.model!r} is not a directory; train the causal LM first: "
            "python -m experiments.tinylm.train --out runs/tinylm/model"
        )
    return args


def _docs(args) -> tuple[list[str], list[str]]:
    from experiments.tinylm.train import split_corpus
    from hiddenlens.corpus import demo_corpus

    train, test = split_corpus(demo_corpus())
    test = [t for t in test if len(t.split()) >= 2]  # a CE needs two tokens
    return train[: args.train_docs], test[: args.test_docs]


def _stores(handle, train, test, args):
    """Activations and CE gradients at the hook: training and held-out stores (reopened
    when the same run already wrote them)."""
    from hiddenlens.store import cache_activations

    return {
        name: cache_activations(
            handle,
            docs,
            [args.hook],
            args.out / f"store_{name}",
            batch_size=32,
            grads=True,
            loss_fn=ev.next_token_loss,
        )  # fmt: skip
        for name, docs in (("train", train), ("test", test))
    }


def _train(store, arch: str, k: int, seed: int, args):
    from hiddenlens.sae import SAEConfig, TrainConfig, train

    cfg = SAEConfig(
        d_in=store.d(args.hook), d_sae=args.d_sae, architecture=arch, k=k,
        grad_beta=args.beta, model_id=str(args.model), hook_point=args.hook,
    )  # fmt: skip
    tcfg = TrainConfig(
        total_tokens=args.tokens, batch_size=args.batch, lr=2e-3, lr_warmup_steps=10,
        dead_tokens=min(len(store), 100_000), seed=seed, num_threads=1, checkpoint_every=0,
    )  # fmt: skip
    torch.manual_seed(seed)
    return train(store, args.hook, cfg, tcfg)


def _store_metrics(sae, store, hook: str, oracle: bool) -> dict[str, float]:
    from experiments.gsae_minilm.run import grad_selected_fvu
    from hiddenlens import parse_key
    from hiddenlens.sae import evaluate

    if oracle:
        return grad_selected_fvu(sae, store, hook)
    m = {parse_key(key)[1]: v for key, v in evaluate(sae, store, hook).items()}
    return {"fvu": m["fvu"], "l0": m["l0"]}


def _run(args) -> dict:
    from hiddenlens import load_model

    handle = load_model(args.model)
    train_docs, test_docs = _docs(args)
    stores = _stores(handle, train_docs, test_docs, args)
    held = ev.held_out(handle, args.hook, test_docs)
    # per_doc[method][k][metric]: [seeds, docs]; saes: one summary row per trained SAE
    per_doc = {m: {k: {} for k in args.ks} for m in METHODS}
    saes, t0 = [], time.perf_counter()
    for k in args.ks:
        for seed in args.seeds:
            for arch in ("topk", "gradient_topk"):
                sae = _train(stores["train"], arch, k, seed, args)
                methods = ("topk",) if arch == "topk" else ("gsae", "gsae_oracle")
                for method in methods:
                    oracle = method == "gsae_oracle"
                    docs = ev.per_doc_spliced(sae, handle, args.hook, held, oracle)
                    for key, v in docs.items():
                        per_doc[method][k].setdefault(key, []).append(v)
                    row = {"k": k, "seed": seed, "method": method}
                    row.update(_store_metrics(sae, stores["test"], args.hook, oracle))
                    saes.append(row)
    return {
        "per_doc": {
            m: {k: {key: np.stack(v) for key, v in d.items()} for k, d in by.items()}
            for m, by in per_doc.items()
        },  # fmt: skip
        "saes": saes,
        "n_ce": held.n_ce,  # token counts per held-out document
        "n_kl": held.n_kl,
        "n_train_rows": len(stores["train"]),
        "n_train_docs": len(train_docs),
        "seconds_train_and_eval": time.perf_counter() - t0,
    }


def _method_stats(d: dict[str, np.ndarray], n_ce, n_kl, counts) -> dict[str, dict]:
    """Token-weighted CE increase, KL and CE-loss score of one method at one k (seed mean)."""
    inc = (d["ce_spliced"] - d["ce_clean"]).mean(0)
    zero_gap = d["ce_zero"].mean(0) - d["ce_clean"].mean(0)
    return {
        "ce_increase": ev.bootstrap_ratio(n_ce * inc, n_ce, counts),
        "kl_spliced": ev.bootstrap_ratio(n_kl * d["kl_spliced"].mean(0), n_kl, counts),
        "ce_loss_score": ev.bootstrap_ratio(n_ce * (zero_gap - inc), n_ce * zero_gap, counts),
    }


def _paired(g: dict, t: dict, n_ce, n_kl, counts) -> dict[str, dict]:
    """g - TopK per document, averaged over seeds: CE increase and KL, with CIs, and the
    number of seeds whose own mean difference is below 0 (g better)."""
    dce = g["ce_spliced"] - t["ce_spliced"]  # [seeds, docs]; the clean CE cancels
    dkl = g["kl_spliced"] - t["kl_spliced"]
    out = {
        "ce_increase": ev.bootstrap_ratio(n_ce * dce.mean(0), n_ce, counts),
        "kl_spliced": ev.bootstrap_ratio(n_kl * dkl.mean(0), n_kl, counts),
    }
    out["ce_increase"]["seeds_lower"] = int(((dce * n_ce).sum(1) < 0).sum())
    out["kl_spliced"]["seeds_lower"] = int(((dkl * n_kl).sum(1) < 0).sum())
    return out


def summarise(res: dict, args) -> dict:
    """Per k: each method's statistics and the paired differences against TopK."""
    n_ce, n_kl = res["n_ce"].astype(float), res["n_kl"].astype(float)
    counts = ev.resample_counts(len(n_ce), args.n_boot, seed=0)
    out = {}
    for k in args.ks:
        docs = {m: res["per_doc"][m][k] for m in METHODS}
        rows = [r for r in res["saes"] if r["k"] == k]
        entry = {"ce_clean": float((n_ce * docs["topk"]["ce_clean"][0]).sum() / n_ce.sum())}
        for m in METHODS:
            entry[m] = _method_stats(docs[m], n_ce, n_kl, counts)
            for key in ("fvu", "l0"):
                entry[m][key] = float(np.mean([r[key] for r in rows if r["method"] == m]))
        for m in ("gsae", "gsae_oracle"):
            entry[f"{m}-topk"] = _paired(docs[m], docs["topk"], n_ce, n_kl, counts)
        out[k] = entry
    return out


def main(argv: list[str] | None = None) -> int:
    from experiments.gsae_tinylm.report import write_outputs

    args = _args(argv)
    t0 = time.time()
    res = _run(args)
    summary = summarise(res, args)
    lines = write_outputs(args, res, summary)
    sys.stdout.write("\n".join(lines) + f"\n({time.time() - t0:.0f} s) written to {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
