"""``hiddenlens train-sae``: argument parsing (no heavy imports) and the call into ``train``.

Under ``torchrun`` the process group is initialised from the environment (gloo on CPU,
NCCL on CUDA) and every rank trains on its slice of each global batch.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

_ARCHS = ("relu", "topk", "batchtopk", "jumprelu", "gated", "gradient_topk")


def add_train_args(p: argparse.ArgumentParser) -> None:
    """Arguments of ``hiddenlens train-sae``."""
    p.add_argument("--store", type=Path, required=True, help="activation store directory")
    p.add_argument("--hook", required=True, help="hook point cached in the store")
    p.add_argument("--out", type=Path, required=True, help="output directory (SAELens format)")
    p.add_argument("--architecture", choices=_ARCHS, default="topk")
    p.add_argument("--d-sae", type=int, default=None, help="latents (default expansion * d)")
    p.add_argument("--expansion", type=int, default=8)
    p.add_argument("--k", type=int, default=32, help="active latents (TopK family)")
    p.add_argument("--total-tokens", type=int, default=10_000_000)
    p.add_argument("--batch-size", type=int, default=4096)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-warmup-steps", type=int, default=100)
    p.add_argument("--l1", type=float, default=5.0, help="sparsity weight (relu/gated/jumprelu)")
    p.add_argument("--l1-warmup-steps", type=int, default=0)
    p.add_argument("--dead-tokens", type=int, default=1_000_000)
    p.add_argument("--b-dec-init", choices=("mean", "geometric_median", "zeros"), default="mean")
    p.add_argument("--no-normalize", action="store_true", help="train on raw activation scale")
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--on-nonfinite", choices=("skip", "raise"), default="skip")
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out")
    p.add_argument("--eval-rows", type=int, default=100_000, help="rows for the final eval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for training")


def _init_distributed(device: str) -> bool:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    import torch.distributed as dist

    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return True


def train_from_args(args: argparse.Namespace) -> int:
    """Train, save to ``--out`` and write ``--out/metrics.json``; returns an exit code."""
    import json

    from hiddenlens.sae import SAEConfig, TrainConfig, evaluate, train
    from hiddenlens.store import ActivationStore

    store = ActivationStore.open(args.store)
    d = store.d(args.hook)
    k = args.k if args.architecture in ("topk", "batchtopk", "gradient_topk") else None
    cfg = SAEConfig(
        d_in=d,
        d_sae=args.d_sae or args.expansion * d,
        architecture=args.architecture,
        k=k,
        hook_point=args.hook,
        model_id=store.manifest.get("model_id"),
    )
    tcfg = TrainConfig(
        total_tokens=args.total_tokens,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_warmup_steps=args.lr_warmup_steps,
        l1_coefficient=args.l1,
        l1_warmup_steps=args.l1_warmup_steps,
        dead_tokens=args.dead_tokens,
        b_dec_init=args.b_dec_init,
        normalize_activations=not args.no_normalize,
        checkpoint_every=args.checkpoint_every,
        on_nonfinite=args.on_nonfinite,
        seed=args.seed,
        device=args.device,
        num_threads=args.threads,
    )
    dist = _init_distributed(args.device)
    try:
        sae = train(
            store, args.hook, cfg, tcfg, out_dir=args.out, progress=True, resume=not args.no_resume
        )
        if not dist or int(os.environ.get("RANK", "0")) == 0:
            metrics = evaluate(sae.cpu(), store, args.hook, max_rows=args.eval_rows)
            (Path(args.out) / "metrics.json").write_text(json.dumps(metrics, indent=2))
            sys.stdout.write(
                f"SAE saved to {args.out}: FVU {metrics[f'sae_fvu/{args.hook}']:.4f}, "
                f"L0 {metrics[f'sae_l0/{args.hook}']:.1f}\n"
            )
    finally:
        if dist:
            import torch.distributed as tdist

            tdist.destroy_process_group()
    return 0
