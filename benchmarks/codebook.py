"""Codebook benchmarks ("Codebook Features", Tamkin, Taufeeque & Goodman, 2023).

1. Top-k code lookup, 4,096 rows x 1,024 codes x d 384 (cosine): hiddenlens'
   ``topk_codes`` and ``CodebookLayer.encode`` against a plain ``normalize + matmul + topk``
   reference, timed interleaved in the same run; ratios printed (< 1 means faster).
2. Fine-tuning throughput in tokens/s: codebooks (k=1, 1,000 codes) at both residual streams
   of a 2-layer d_model 64 TransformerLens model (the TokFSM setting), codebook-only, next to
   plain training of the same model without codebooks.

    python benchmarks/codebook.py [--repeats 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from hiddenlens.codebook import CodebookLayer, FinetuneConfig, attach, finetune, topk_codes


def reference_topk(x: torch.Tensor, codes: torch.Tensor, k: int) -> torch.Tensor:
    return (F.normalize(x, dim=-1) @ F.normalize(codes, dim=-1).T).topk(k, dim=-1).indices


def bench_lookup(repeats: int) -> None:
    g = torch.Generator().manual_seed(0)
    x, codes = torch.randn(4096, 384, generator=g), torch.randn(1024, 384, generator=g)
    for k in (1, 8):
        layer = CodebookLayer(384, 1024, k=k)
        with torch.no_grad():
            layer.codes.copy_(codes)
        fns = {
            "reference normalize+matmul+topk": lambda k=k: reference_topk(x, codes, k),
            "hiddenlens topk_codes": lambda k=k: topk_codes(x, codes, k, "cosine")[0],
            "hiddenlens CodebookLayer.encode": lambda layer=layer: layer.encode(x),
        }
        ref = fns["reference normalize+matmul+topk"]()
        for name, fn in fns.items():  # same answer (scores tie only on exact duplicates)
            assert torch.equal(fn().sort(-1).values, ref.sort(-1).values), name
        times = {name: [] for name in fns}
        with torch.no_grad():
            for _ in range(repeats):
                for name, fn in fns.items():  # interleaved so load changes hit all alike
                    t0 = time.perf_counter()
                    fn()
                    times[name].append(time.perf_counter() - t0)
        base = statistics.median(times["reference normalize+matmul+topk"])
        print(f"top-{k} lookup, 4096 x 1024 codes x d 384 (median of {repeats}):")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {name:34s} {1e3 * med:8.2f} ms  ratio {med / base:5.2f}")


def _tiny_model():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=64,
        n_heads=4,
        d_head=16,
        d_mlp=256,
        n_ctx=64,
        d_vocab=10,
        act_fn="gelu",
        seed=0,
    )
    return HookedTransformer(cfg)


def _lm_loss(logits, tokens):
    return F.cross_entropy(logits[:, :-1].reshape(-1, 10), tokens[:, 1:].reshape(-1))


def bench_finetune(steps: int) -> None:
    model = _tiny_model()
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, 10, (32, 64), generator=g) for _ in range(4)]
    # Plain training of the same model (all parameters) as the yardstick.
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    t0 = time.perf_counter()
    for i in range(steps):
        loss = _lm_loss(model(batches[i % 4]), batches[i % 4])
        opt.zero_grad()
        loss.backward()
        opt.step()
    plain = steps * batches[0].numel() / (time.perf_counter() - t0)
    hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"]
    init = {h: torch.randn(2048, 64, generator=g) for h in hooks}
    cb = attach(model, hooks, n_codes=1000, k=1, init=init, kmeans_iter=2)
    hist = finetune(cb, batches, _lm_loss, FinetuneConfig(steps=steps, lr=1e-3))
    cb.detach()
    print(f"fine-tuning, 2-layer d_model 64, batch 32 x 64 tokens, {steps} steps:")
    print(f"  plain model training            {plain:10.0f} tokens/s")
    print(
        f"  codebook-only (2 x 1000 codes)  {hist['tokens_per_s']:10.0f} tokens/s  "
        f"ratio {hist['tokens_per_s'] / plain:5.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    bench_lookup(args.repeats)
    bench_finetune(args.steps)


if __name__ == "__main__":
    main()
