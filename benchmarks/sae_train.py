"""TopK SAE training speed and quality: hiddenlens vs sae-lens, side by side in one run.

Same activations (synthetic sparse data, or a store hook with --store/--hook), TopK with
d_in 384, d_sae 6144, k 32, batch 4096, Adam. Prints:
  * tokens/s of a full hiddenlens training step vs sae-lens's TopKTrainingSAE with its own
    optimizer step (forward, firing stats, backward, grad clipping, Adam), and the ratio;
  * the hiddenlens step time over the dense encoder matmul alone (the floor; target <= 2x);
  * FVU on held-out rows after the same number of training tokens for both;
  * the breakdown of the hiddenlens step: the chunked encoder matmul alone, the top-k choice
    on its tiles, the sparse forward (values at the chosen pairs, decode, loss), backward,
    and the optimizer (decoder-gradient projection, Adam, renormalisation), so the gap to
    the matmul floor is visible.

    .venv/bin/python benchmarks/sae_train.py [--steps 12] [--threads 1] [--device cuda]
        [--encoder-dtype bfloat16]

``--device cuda`` runs the same comparison on a GPU (timers synchronise the device);
``--encoder-dtype bfloat16`` makes hiddenlens choose latents with a bf16 encoder matmul.

Threads default to 1: on a shared 2-core box, OpenMP synchronisation between two threads
dominates every small op when other processes compete for the cores (measured: a 1 ms op
takes ~30 ms), which says nothing about either library. Pass --threads to change it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

D_IN, D_SAE, K, BATCH = 384, 6144, 32, 4096


def synthetic(n: int, seed: int = 0) -> torch.Tensor:
    """Sparse non-negative combinations of 12k random unit directions, plus a mean."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(12_000, D_IN, generator=g)
    feats /= feats.norm(dim=1, keepdim=True)
    idx = torch.randint(0, feats.shape[0], (n, 24), generator=g)
    coef = torch.rand(n, 24, generator=g) * 2
    x = torch.nn.functional.embedding_bag(
        idx.flatten(),
        feats,
        per_sample_weights=coef.flatten(),
        mode="sum",
        offsets=torch.arange(0, n * 24, 24),
    )
    return x + 0.3 * torch.randn(D_IN, generator=g) + 0.05 * torch.randn(n, D_IN, generator=g)


def from_store(path: str, hook: str, n: int) -> torch.Tensor:
    from hiddenlens.store import ActivationStore

    store = ActivationStore.open(path)
    return torch.from_numpy(np.asarray(store.rows(hook, 0, n), dtype=np.float32))


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def hiddenlens_trainer(lr: float, device: str = "cpu", encoder_dtype: str = "float32"):
    from hiddenlens.sae import SAEConfig, build_sae
    from hiddenlens.sae.optim import Adam

    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=K)
    sae = build_sae(cfg, seed=0).to(device).train()
    sae.selection_dtype = getattr(torch, encoder_dtype)  # what TrainConfig.encoder_dtype sets
    opt = Adam(sae.parameters(), lr=lr)

    def step(x: torch.Tensor) -> None:
        out = sae(x, coefs={"aux": 1 / 32}, dead_mask=None)
        opt.zero_grad()
        out.losses["loss"].backward()
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()

    return sae, step, lambda x: sae.reconstruct(x), opt


def step_breakdown(sae, opt, batches, device: str) -> dict[str, float]:
    """Mean seconds of each piece of the hiddenlens TopK step (the library's own calls)."""
    from hiddenlens.sae.architectures.topk import CHUNK_ROWS, select_topk, sparse_forward

    parts = dict.fromkeys(
        ["encoder matmul", "top-k", "sparse forward", "backward", "optimizer"], 0.0
    )

    def lap(name, t0):
        _sync(device)
        t = time.perf_counter()
        parts[name] += t - t0
        return t

    for x in batches:
        x_c = sae.center(x).detach()
        w, b = sae.W_enc.to(sae.selection_dtype), sae.b_enc.to(sae.selection_dtype)
        _sync(device)
        t = time.perf_counter()
        with torch.no_grad():  # the matmul alone, tile by tile as select_topk runs it
            for s in range(0, x.shape[0], CHUNK_ROWS):
                torch.addmm(b, x_c[s : s + CHUNK_ROWS].to(w.dtype), w)
        t = lap("encoder matmul", t)
        with torch.no_grad():
            sel = select_topk(sae, x_c, K)
        t = lap("top-k", t)  # select_topk's time less the matmul (subtracted below)
        out = sparse_forward(sae, x, x_c, sel, {"aux": 1 / 32})
        t = lap("sparse forward", t)
        opt.zero_grad()
        out.losses["loss"].backward()
        t = lap("backward", t)
        sae.project_decoder_grad()
        opt.step()
        sae.normalize_decoder()
        lap("optimizer", t)
    parts["top-k"] -= parts["encoder matmul"]
    return {k: v / len(batches) for k, v in parts.items()}


def saelens_trainer(lr: float, device: str = "cpu"):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.saes.sae import TrainStepInput

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=D_SAE, k=K, device=device))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    state = {"n": 0}

    def step(x: torch.Tensor) -> None:
        out = sae.training_forward_pass(
            TrainStepInput(
                sae_in=x,
                coefficients={},
                dead_neuron_mask=None,
                n_training_steps=state["n"],
                is_logging_step=False,
            )
        )
        with torch.no_grad():
            _ = out.feature_acts.bool().float().sum(0)  # firing statistics, as its trainer
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        state["n"] += 1

    return sae, step, lambda x: sae(x)


def fvu(recon_fn, x: torch.Tensor) -> float:
    with torch.no_grad():
        r = recon_fn(x)
    return float((x - r).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def timed_steps(step, batches, device: str = "cpu") -> float:
    step(batches[0])  # warm-up (allocations, lazy imports)
    _sync(device)
    t = time.perf_counter()
    for b in batches[1:]:
        step(b)
    _sync(device)
    return (time.perf_counter() - t) / (len(batches) - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both libraries")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--store", default=None)
    ap.add_argument("--hook", default=None)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    ap.add_argument("--encoder-dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    n = BATCH * (args.steps + 1) + 8192
    x = from_store(args.store, args.hook, n) if args.store else synthetic(n)
    x = x.to(args.device)
    x = x * (D_IN**0.5 / x.norm(dim=1).mean())  # both libraries see the same normalised data
    batches = list(x[: BATCH * (args.steps + 1)].split(BATCH))
    held_out = x[-8192:]

    dev = args.device
    w = torch.randn(D_IN, D_SAE, device=dev)
    matmul_s = timed_steps(lambda b: b @ w, batches[:4], dev)
    hl_sae, hl_step, hl_recon, hl_opt = hiddenlens_trainer(args.lr, dev, args.encoder_dtype)
    with torch.no_grad():
        hl_sae.b_dec.copy_(x.mean(0))
    hl_s = timed_steps(hl_step, batches, dev)
    sl_sae, sl_step, sl_recon = saelens_trainer(args.lr, dev)
    with torch.no_grad():
        sl_sae.b_dec.copy_(x.mean(0))
    sl_s = timed_steps(sl_step, batches, dev)
    print(
        f"device={dev} threads={args.threads} steps={args.steps} batch={BATCH} d_in={D_IN} "
        f"d_sae={D_SAE} k={K} encoder_dtype={args.encoder_dtype}"
    )
    print(f"dense encoder matmul      : {matmul_s * 1e3:8.1f} ms")
    print(f"hiddenlens step           : {hl_s * 1e3:8.1f} ms  ({BATCH / hl_s:9.0f} tokens/s)")
    print(f"sae-lens step             : {sl_s * 1e3:8.1f} ms  ({BATCH / sl_s:9.0f} tokens/s)")
    print(f"speed-up vs sae-lens      : {sl_s / hl_s:8.2f} x   (target >= 4)")
    print(f"step / dense matmul       : {hl_s / matmul_s:8.2f} x   (target <= 2)")
    f_hl, f_sl = fvu(hl_recon, held_out), fvu(sl_recon, held_out)
    print(
        f"held-out FVU after {BATCH * args.steps} tokens: hiddenlens {f_hl:.4f}, "
        f"sae-lens {f_sl:.4f} (ratio {f_hl / f_sl:.3f}, target <= 1.02)"
    )

    pieces = step_breakdown(hl_sae, hl_opt, batches[1:], dev)
    total = sum(pieces.values())
    print(f"hiddenlens step breakdown (sum {total * 1e3:.1f} ms; floor = the encoder matmul):")
    for name, sec in pieces.items():
        print(f"  {name:<22}: {sec * 1e3:8.1f} ms  ({sec / matmul_s:5.2f} x dense matmul)")


if __name__ == "__main__":
    main()
