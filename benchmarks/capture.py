"""Capture and store benchmarks: ratios measured side by side in one run.

On MiniLM over (a sample of) the demo corpus, hook points encoder.layer.0..5:
- capture to memory vs the bare forward pass          (target <= 1.10x)
- cache_activations to disk vs the bare forward pass  (target <= 1.30x)
- store.batches(shuffle=True) vs a sequential np.memmap read of the same bytes
                                                      (target >= 0.50 of its throughput)
- peak RSS when caching N vs 10N rows, in subprocesses (target: rise <= one shard)
- TransformerLens run_with_cache vs capture on a small random HookedTransformer (info)

Each timing is the best of several interleaved repetitions, so load from other processes
mostly cancels in the ratios. Usage:
    python benchmarks/capture.py [--tokens 4000] [--reps 2]   (--tokens 20000 for a fuller run)
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def line(name: str, value: float, target: str, fmt: str = "{:.3f}") -> None:
    print(f"{name}: {fmt.format(value)} ({target})", flush=True)


def best_of(fns: dict, reps: int, clock=time.perf_counter) -> dict[str, float]:
    """Interleave the functions ``reps`` times; the minimum time of each."""
    best = {k: float("inf") for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            best[name] = min(best[name], clock() - t0)
    return best


def corpus_sample(handle, n_tokens: int) -> list[str]:
    from hiddenlens.corpus import demo_corpus

    texts, total = [], 0
    for text in demo_corpus():
        texts.append(text)
        total += len(handle.tokenizer(text, truncation=True, max_length=128)["input_ids"])
        if total >= n_tokens:
            break
    return texts


def bench_minilm(args, out_dir: Path) -> Path:
    import hiddenlens
    from hiddenlens.hooks import capture, resolve_hook_points

    handle = hiddenlens.load_model("minilm")
    texts = corpus_sample(handle, args.tokens)
    hooks = resolve_hook_points(handle, "encoder.layer.*")
    bs, seq_len = 32, 128
    batches = [texts[i : i + bs] for i in range(0, len(texts), bs)]
    store_dir = out_dir / "minilm"

    @torch.no_grad()
    def bare():
        for batch in batches:
            handle.forward(handle.tokenize(batch, seq_len))

    @torch.no_grad()
    def to_memory():
        kept = []
        for batch in batches:
            enc = handle.tokenize(batch, seq_len)
            with capture(handle, hooks) as cap:
                handle.forward(enc)
            keep = enc["attention_mask"].bool() & ~enc["special_tokens_mask"].bool()
            kept.append({h: cap[h][keep] for h in hooks})
        return kept

    def to_disk():
        shutil.rmtree(store_dir, ignore_errors=True)
        hiddenlens.cache_activations(
            handle, texts, hooks, store_dir, batch_size=bs, seq_len=seq_len, shard_size_mb=32
        )

    bare()  # warm-up (allocator, kernels)
    t = best_of({"bare": bare, "memory": to_memory, "disk": to_disk}, args.reps)
    store = hiddenlens.ActivationStore.open(store_dir)
    print(
        f"# minilm: {len(texts)} texts, {len(store)} token rows, {len(hooks)} hooks, "
        f"bare forward {t['bare']:.2f} s, best of {args.reps}"
    )
    line("capture_to_memory / bare_forward", t["memory"] / t["bare"], "target <= 1.10")
    line("cache_to_disk / bare_forward", t["disk"] / t["bare"], "target <= 1.30")
    return store_dir


def bench_loader(store_dir: Path, reps: int, batch_size: int = 4096) -> None:
    from hiddenlens.store import ActivationStore

    store = ActivationStore.open(store_dir)
    hooks = store.hook_points
    files = [
        store_dir / s["name"] / store.manifest["hooks"][h]["file"]
        for h in hooks
        for s in store.manifest["shards"]
    ]
    n_bytes = sum(len(store) * store.d(h) * 4 for h in hooks)

    def sequential():
        for f in files:
            mm = np.load(f, mmap_mode="r")
            for i in range(0, len(mm), batch_size):
                torch.from_numpy(np.array(mm[i : i + batch_size]))

    seed = iter(range(10**6))

    def shuffled():
        s = next(seed)
        for h in hooks:
            for _ in store.batches(h, batch_size, shuffle=True, seed=s):
                pass

    t0 = time.perf_counter()
    shuffled()  # first pass: includes the one-time sha256 check of every file
    first = time.perf_counter() - t0
    wall = best_of({"seq": sequential, "shuf": shuffled}, reps + 2)
    cpu = best_of({"seq": sequential, "shuf": shuffled}, reps + 2, clock=time.process_time)
    print(
        f"# loader: {n_bytes / 2**20:.0f} MiB over {len(files)} files; sequential "
        f"{n_bytes / wall['seq'] / 1e9:.2f} GB/s, shuffled {n_bytes / wall['shuf'] / 1e9:.2f} "
        f"GB/s (first pass incl. checksums {n_bytes / first / 1e9:.2f} GB/s)"
    )
    line(
        "shuffled_batches / sequential_memmap throughput (wall)",
        wall["seq"] / wall["shuf"],
        "target >= 0.50",
    )
    line(
        "shuffled_batches / sequential_memmap throughput (cpu)",
        cpu["seq"] / cpu["shuf"],
        "target >= 0.50",
    )
    line(
        "first_pass_with_checksums / sequential_memmap throughput",
        wall["seq"] / first,
        "info: sha256 runs once per file per open store",
    )


_MEMORY_CHILD = """
import json, re, sys, torch
from torch import nn
from hiddenlens.store import cache_activations

def status(key):  # kB, from /proc/self/status
    return int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

rows, out, shard_mb, n_max = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(32, 384), *[nn.Linear(384, 384) for _ in range(5)])
data = torch.randn(n_max, 32)  # same input in both runs; max_rows picks N or 10N
with torch.no_grad():
    model(data[:256])  # allocator warm-up, as the cache's first batch will do
open("/proc/self/clear_refs", "w").write("5")  # reset the RSS high-water mark (Linux)
base = status("VmRSS")
store = cache_activations(model, data, [str(i) for i in range(6)], out, batch_size=256,
                          max_rows=rows, shard_size_mb=shard_mb)
print(json.dumps({"rows": len(store), "base_kb": base, "peak_kb": status("VmHWM")}))
"""


def bench_memory(out_dir: Path, n_rows: int, shard_mb: float) -> None:
    results = {}
    for rows in (n_rows, 10 * n_rows):
        target = out_dir / f"mem_{rows}"
        cmd = [
            sys.executable,
            "-c",
            _MEMORY_CHILD,
            str(rows),
            str(target),
            str(shard_mb),
            str(10 * n_rows),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results[rows] = json.loads(proc.stdout.strip().splitlines()[-1])
        shutil.rmtree(target, ignore_errors=True)
    small, big = results[n_rows], results[10 * n_rows]
    grow = {k: (r["peak_kb"] - r["base_kb"]) / 1024 for k, r in results.items()}
    rise_mb = grow[10 * n_rows] - grow[n_rows]
    print(
        f"# memory: RSS rise during cache_activations {grow[n_rows]:.0f} MiB for {n_rows} "
        f"rows ({small['rows'] * 9216 / 2**20:.0f} MiB of activations), "
        f"{grow[10 * n_rows]:.0f} MiB for {10 * n_rows} rows "
        f"({big['rows'] * 9216 / 2**20:.0f} MiB); shard {shard_mb:g} MiB"
    )
    line("peak_rss_rise_10x_rows / shard_size", rise_mb / shard_mb, "target <= 1.0")


def bench_transformer_lens(reps: int) -> None:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from hiddenlens.hooks import capture, hook_points

    cfg = HookedTransformerConfig(
        n_layers=4,
        d_model=128,
        n_ctx=64,
        d_head=32,
        n_heads=4,
        d_mlp=512,
        d_vocab=2000,
        act_fn="gelu",
        seed=0,
    )
    model = HookedTransformer(cfg).eval()
    tokens = torch.randint(0, cfg.d_vocab, (4, 64), generator=torch.Generator().manual_seed(0))
    names = hook_points(model)

    @torch.no_grad()
    def tl():
        model.run_with_cache(tokens)

    @torch.no_grad()
    def hl():
        with capture(model, names, stop_early=False) as cap:
            model(tokens)
        return cap.acts

    @torch.no_grad()
    def bare():
        model(tokens)

    with torch.no_grad():
        _, tl_cache = model.run_with_cache(tokens)
    assert set(hl()) == set(tl_cache.keys()), "capture and run_with_cache disagree on names"
    t = best_of({"bare": bare, "tl": tl, "hl": hl}, reps + 2)
    print(
        f"# transformer_lens: {len(names)} hook points, bare {t['bare'] * 1e3:.0f} ms, "
        f"run_with_cache {t['tl'] * 1e3:.0f} ms, capture {t['hl'] * 1e3:.0f} ms"
    )
    line(
        "capture / run_with_cache (all hooks, HookedTransformer)",
        t["hl"] / t["tl"],
        "info: < 1 means capture is faster",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4000, help="MiniLM tokens to run")
    parser.add_argument("--reps", type=int, default=2, help="interleaved repetitions")
    parser.add_argument("--mem-rows", type=int, default=4000, help="N for the memory test")
    parser.add_argument("--shard-mb", type=float, default=8.0, help="shard size, memory test")
    args = parser.parse_args()
    torch.manual_seed(0)
    out_dir = Path(tempfile.mkdtemp(prefix="hiddenlens-bench-"))
    start = time.perf_counter()
    try:
        store_dir = bench_minilm(args, out_dir)
        bench_loader(store_dir, args.reps)
        bench_memory(out_dir, args.mem_rows, args.shard_mb)
        bench_transformer_lens(args.reps)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# total {time.perf_counter() - start:.0f} s, peak RSS of this process {peak:.0f} MiB")


if __name__ == "__main__":
    main()
