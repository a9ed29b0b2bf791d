"""TopK SAE training speed and quality: hiddenlens vs sae-lens and sparsify, side by side.

Same activations (synthetic sparse data, or a store hook with --store/--hook), TopK with
d_in 384, d_sae 6144, k 32, batch 4096, Adam, for all three. Each library's own training
step is timed on the same batches, interleaved round by round (best round of --rounds:
the machine this was written on is shared, so every round sees the same load):
  * hiddenlens: forward, loss, backward, decoder-gradient projection, Adam, renormalisation;
  * sae-lens (``TopKTrainingSAE``): forward, firing statistics, backward, gradient
    clipping, ``torch.optim.Adam`` (what its trainer does);
  * EleutherAI sparsify (``SparseCoder``, package ``eai-sparsify``; on CPU its decoder is
    the eager ``embedding_bag`` path): forward, firing mask, backward of its FVU loss,
    decoder-gradient projection, ``torch.optim.Adam`` (what its trainer does);
  * the floor: the dense encoder matmul alone, as one ``x @ W_enc``, in row chunks, and in
    row chunks written into one reused tile as hiddenlens runs it (the fastest is the floor).
It prints tokens/s and the ratios (targets: >= 6x sae-lens, >= 2.5x sparsify, step <= 1.3x
the floor), FVU on held-out rows after the same training for all three (quality must not
fall), and the breakdown of the hiddenlens step (chunked encoder matmul, top-k, sparse
forward, backward, decoder-gradient projection, Adam, renormalisation), so the gap to the
floor is visible, and the kernels every exact sparse step needs, each timed alone, whose
sum bounds the step from below (``bare_kernels``).

    .venv/bin/python benchmarks/sae_train.py [--steps 8] [--rounds 3] [--threads 1]
        [--device cuda] [--encoder-dtype bfloat16]

``--device cuda`` runs the same comparison on a GPU (timers synchronise the device); without
a CUDA GPU it stops at once with a message saying so. ``--encoder-dtype bfloat16`` makes
hiddenlens choose latents with a bf16 encoder matmul.

Threads default to 1: on a shared 2-core box, OpenMP synchronisation between two threads
dominates every small op when other processes compete for the cores, which says nothing
about any library. Pass --threads to change it (all three use the same torch threads).
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
    from hiddenlens.sae import SAEConfig, TrainConfig, build_sae
    from hiddenlens.sae.optim import Adam

    cfg = SAEConfig(d_in=D_IN, d_sae=D_SAE, architecture="topk", k=K)
    sae = build_sae(cfg, seed=0).to(device).train()
    with torch.no_grad():  # the encoder start the trainer gives a TopK SAE by default
        sae.W_enc.mul_(TrainConfig().encoder_start(type(sae)))
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


def step_breakdown(sae, opt, batches, device: str, clock) -> dict[str, float]:
    """Mean seconds of each piece of the hiddenlens TopK step (the library's own calls),
    by ``clock`` (``time.process_time`` on CPU: steadier on a shared box)."""
    from hiddenlens.sae import topk_kernel
    from hiddenlens.sae.architectures.topk import CHUNK_ROWS, select_topk, sparse_forward

    names = ["encoder matmul", "top-k", "sparse forward", "backward", "decoder-grad projection",
             "Adam", "decoder renormalisation"]  # fmt: skip
    parts = dict.fromkeys(names, 0.0)
    start = {"t": 0.0}

    def lap(name):
        _sync(device)
        t = clock()
        parts[name] += t - start["t"]
        start["t"] = t

    for x in batches:
        x_c = sae.center(x).detach()
        w, b = sae.W_enc.to(sae.selection_dtype), sae.b_enc.to(sae.selection_dtype)
        _sync(device)
        start["t"] = clock()
        with torch.no_grad():  # the matmul alone, tile by tile as select_topk runs it
            tile = x_c.new_empty(CHUNK_ROWS, D_SAE, dtype=w.dtype)
            folded = w.dtype == torch.float32 and topk_kernel.available(tile, K)
            for s in range(0, x.shape[0], CHUNK_ROWS):
                if folded:  # the C top-k adds the bias as it reads the tile
                    torch.mm(x_c[s : s + CHUNK_ROWS], w, out=tile)
                else:
                    torch.addmm(b, x_c[s : s + CHUNK_ROWS].to(w.dtype), w, out=tile)
        lap("encoder matmul")
        with torch.no_grad():
            sel = select_topk(sae, x_c, K)
        lap("top-k")  # select_topk's time less the matmul (subtracted below)
        out = sparse_forward(sae, x, x_c, sel, {"aux": 1 / 32})
        lap("sparse forward")
        opt.zero_grad()
        out.losses["loss"].backward()
        lap("backward")
        sae.project_decoder_grad()
        lap("decoder-grad projection")
        opt.step()
        lap("Adam")
        sae.normalize_decoder()
        lap("decoder renormalisation")
    parts["top-k"] -= parts["encoder matmul"]
    return {k: v / len(batches) for k, v in parts.items()}


def bare_kernels(sae, x: torch.Tensor, device: str, clock) -> dict[str, float]:
    """Best-of-5 seconds of each kernel an exact sparse TopK step runs at least once, alone,
    on this batch's chosen pairs: a pass over the pre-activation tiles (the choice must read
    them), the decode, the value gradient, the two grouped weight gradients, the Adam update
    and the unit-norm decoder's gradient projection and renormalisation (the library's and
    sparsify's default recipe). Whatever is fused, the step cannot take less than the floor
    plus their sum."""
    import copy
    import warnings

    import torch.nn.functional as F

    from hiddenlens.sae.architectures.topk import CHUNK_ROWS, select_topk
    from hiddenlens.sae.optim import Adam
    from hiddenlens.sae.sparse import Active

    with torch.no_grad():
        x_c = sae.center(x).detach()
        sel = select_topk(sae, x_c, K)
        act = Active.from_topk(sel.idx, D_SAE)
        v, gy = torch.relu(sel.pre.reshape(-1)).contiguous(), torch.randn_like(x)
        tile = torch.mm(x_c[:CHUNK_ROWS], sae.W_enc)
        cols, crow = act._row_bags
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sparse CSR is "beta"
            mask = torch.sparse_csr_tensor(crow, cols, v, (BATCH, D_SAE), check_invariants=False)
        twin = copy.deepcopy(sae)  # the library's own update calls, on a copy
        for p in twin.parameters():
            p.grad = torch.randn_like(p)
        opt = Adam(twin.parameters(), lr=1e-6)
        kernels = {
            "a pass over the tiles": lambda: [tile.amax(1) for _ in range(BATCH // CHUNK_ROWS)],
            "decode": lambda: F.embedding_bag(
                cols, sae.W_dec, crow[:-1], mode="sum", per_sample_weights=v
            ),  # fmt: skip
            "value gradient": lambda: torch.sparse.sampled_addmm(mask, gy, sae.W_dec.t(), beta=0),
            "dW_dec (grouped)": lambda: act._group_by_latent(gy, v),
            "dW_enc (grouped)": lambda: act._group_by_latent(x_c, v, transposed=True),
            "Adam": opt.step,
            # unit-norm decoder rows (the default recipe): project the gradient, renormalise
            "decoder projection": twin.project_decoder_grad,
            "decoder renormalisation": twin.normalize_decoder,
        }
        out = {}
        for name, fn in kernels.items():
            fn()
            best = float("inf")
            for _ in range(5):
                _sync(device)
                t = clock()
                fn()
                _sync(device)
                best = min(best, clock() - t)
            out[name] = best
    return out


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


def sparsify_trainer(lr: float, device: str = "cpu"):
    """sparsify's SparseCoder and the body of its trainer's step; None if not installed."""
    try:
        from sparsify import SparseCoder, SparseCoderConfig
    except ImportError as err:
        return None, f"sparsify not importable ({err}); pip install eai-sparsify"
    sae = SparseCoder(D_IN, SparseCoderConfig(num_latents=D_SAE, k=K), device=device)
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    did_fire = torch.zeros(D_SAE, dtype=torch.bool, device=device)

    def step(x: torch.Tensor) -> None:
        out = sae(x, dead_mask=None)
        did_fire[out.latent_indices.flatten()] = True
        out.fvu.backward()  # + auxk_alpha * auxk_loss, which is 0 without dead latents
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()

    def recon(x: torch.Tensor) -> torch.Tensor:
        acts, idx, _ = sae.encode(x)
        return sae.decode(acts, idx)

    return sae, (step, recon)


def fvu(recon_fn, x: torch.Tensor) -> float:
    with torch.no_grad():
        r = recon_fn(x)
    return float((x - r).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def race(steps: dict, batches, rounds: int, device: str = "cpu") -> dict[str, dict]:
    """Best-of-``rounds`` seconds per step of each ``steps[name](batch)``: wall-clock and
    this process's CPU time (``{"wall": {name: s}, "cpu": {name: s}}``).

    The contestants take turns within each round, so a change in the machine's load hits
    them all; each is warmed up once first (allocations, lazy imports). On a shared box the
    CPU time is the steadier measure: it does not count time the scheduler gave others."""
    for step in steps.values():
        step(batches[0])
    best = {"wall": dict.fromkeys(steps, float("inf")), "cpu": dict.fromkeys(steps, float("inf"))}
    for _ in range(rounds):
        for name, step in steps.items():
            _sync(device)
            t, c = time.perf_counter(), time.process_time()
            for b in batches:
                step(b)
            _sync(device)
            for key, now, t0 in (("wall", time.perf_counter(), t), ("cpu", time.process_time(), c)):
                best[key][name] = min(best[key][name], (now - t0) / len(batches))
    return best


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="training steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds; the best one counts")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for every library")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--store", default=None)
    ap.add_argument("--hook", default=None)
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    ap.add_argument("--encoder-dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    for name in ("steps", "rounds", "threads"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    from hiddenlens.hooks.device import resolve_device

    try:
        args.device = str(resolve_device(args.device))
    except ValueError as err:  # e.g. --device cuda on a machine without a CUDA GPU
        ap.error(f"--device {args.device}: {err}")
    return args


def _floor_steps(x_all: torch.Tensor, device: str) -> dict:
    from hiddenlens.sae.architectures.topk import CHUNK_ROWS

    w = torch.randn(D_IN, D_SAE, device=device) / D_IN**0.5
    b = torch.zeros(D_SAE, device=device)
    tile = torch.empty(CHUNK_ROWS, D_SAE, device=device)
    return {
        "dense matmul (one x @ W_enc)": lambda x: x @ w,
        "dense matmul (row chunks)": lambda x: [
            torch.addmm(b, x[s : s + CHUNK_ROWS], w) for s in range(0, x.shape[0], CHUNK_ROWS)
        ],
        "dense matmul (chunks, 1 tile)": lambda x: [  # as select_topk runs it
            torch.addmm(b, x[s : s + CHUNK_ROWS], w, out=tile)
            for s in range(0, x.shape[0], CHUNK_ROWS)
        ],
    }


def main() -> None:
    args = _args()
    torch.set_num_threads(args.threads)
    dev = args.device
    n = BATCH * args.steps + 8192
    x = from_store(args.store, args.hook, n) if args.store else synthetic(n)
    x = x.to(dev)
    x = x * (D_IN**0.5 / x.norm(dim=1).mean())  # every library sees the same normalised data
    batches, held_out = list(x[: BATCH * args.steps].split(BATCH)), x[-8192:]

    models, steps = {}, _floor_steps(x, dev)
    hl_sae, hl_step, hl_recon, hl_opt = hiddenlens_trainer(args.lr, dev, args.encoder_dtype)
    models["hiddenlens"], steps["hiddenlens"] = (hl_sae, hl_recon), hl_step
    sl_sae, sl_step, sl_recon = saelens_trainer(args.lr, dev)
    models["sae-lens"], steps["sae-lens"] = (sl_sae, sl_recon), sl_step
    sp_sae, sp = sparsify_trainer(args.lr, dev)
    if sp_sae is not None:
        models["sparsify"], steps["sparsify"] = (sp_sae, sp[1]), sp[0]
    with torch.no_grad():  # decoder bias at the data mean, as all three trainers start
        for sae, _ in models.values():
            sae.b_dec.copy_(x.mean(0))
    sec = race(steps, batches, args.rounds, dev)
    _report(args, sec, models, held_out, None if sp_sae is not None else sp)
    cpu = not dev.startswith("cuda")  # CPU time says nothing of a GPU's work
    pieces = step_breakdown(hl_sae, hl_opt, batches, dev, time.process_time if cpu else
                            time.perf_counter)  # fmt: skip
    floor = min(sec["cpu" if cpu else "wall"][f] for f in FLOORS)
    print(f"hiddenlens step breakdown, {'CPU time' if cpu else 'wall-clock'} (sum "
          f"{sum(pieces.values()) * 1e3:.1f} ms; floor = the dense encoder matmul):")  # fmt: skip
    for name, s in pieces.items():
        print(f"  {name:<24}: {s * 1e3:8.1f} ms  ({s / floor:5.2f} x floor)")
    bare = bare_kernels(hl_sae, batches[0], dev, time.process_time if cpu else time.perf_counter)
    total = sum(bare.values())
    print(f"kernels every exact sparse TopK step runs, each alone (sum {total * 1e3:.1f} ms): "
          f"the step cannot go below {1 + total / floor:.2f} x the floor with them")  # fmt: skip
    for name, s in bare.items():
        print(f"  {name:<24}: {s * 1e3:8.1f} ms  ({s / floor:5.2f} x floor)")


FLOORS = ("dense matmul (one x @ W_enc)", "dense matmul (row chunks)",
          "dense matmul (chunks, 1 tile)")  # fmt: skip


def _native_on() -> bool:
    """Whether hiddenlens's C kernels are built here (off: HIDDENLENS_NATIVE=0, no compiler)."""
    from hiddenlens.sae import sparse_kernel, topk_kernel

    return topk_kernel._kernel() is not None and sparse_kernel._lib() is not None


def _report(args, sec: dict, models: dict, held_out, sparsify_missing: str | None) -> None:
    print(
        f"device={args.device} threads={args.threads} steps={args.steps} rounds={args.rounds} "
        f"batch={BATCH} d_in={D_IN} d_sae={D_SAE} k={K} encoder_dtype={args.encoder_dtype} "
        f"native_kernels={'on' if _native_on() else 'off'} "
        f"(best round of {args.rounds}, libraries interleaved)"
    )
    wall, cpu = sec["wall"], sec["cpu"]
    print(f"{'seconds per step':<30}  {'wall ms':>9}  {'tokens/s':>9}  {'CPU ms':>9}")
    for name in wall:
        print(f"{name:<30}: {wall[name] * 1e3:9.1f}  {BATCH / wall[name]:9.0f}  "
              f"{cpu[name] * 1e3:9.1f}")  # fmt: skip
    if sparsify_missing:
        print(f"sparsify                      : not measured: {sparsify_missing}")
    refs = [("sae-lens", "target >= 6"), ("sparsify", "target >= 2.5")]
    for ref, target in refs:
        if ref in wall:
            print(f"hiddenlens / {ref:<9} tokens/s: {wall[ref] / wall['hiddenlens']:6.2f} x wall, "
                  f"{cpu[ref] / cpu['hiddenlens']:6.2f} x CPU time   ({target})")  # fmt: skip
    fl_wall, fl_cpu = min(wall[f] for f in FLOORS), min(cpu[f] for f in FLOORS)
    print(f"hiddenlens step / floor       : {wall['hiddenlens'] / fl_wall:6.2f} x wall, "
          f"{cpu['hiddenlens'] / fl_cpu:6.2f} x CPU time   (target <= 1.3)")  # fmt: skip
    f = {name: fvu(recon, held_out) for name, (_, recon) in models.items()}
    tokens = BATCH * (args.steps * args.rounds + 1)  # the rounds + the warm-up step
    print(f"held-out FVU after {tokens} training tokens: "
          + ", ".join(f"{k} {v:.4f}" for k, v in f.items())
          + "".join(f"; hiddenlens / {k} {f['hiddenlens'] / f[k]:.3f}" for k in f
                    if k != "hiddenlens") + " (target <= 1.02)")  # fmt: skip


if __name__ == "__main__":
    main()
