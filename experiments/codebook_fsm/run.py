"""Reproduce the TokFSM claims of "Codebook Features" (Tamkin, Taufeeque & Goodman, 2023).

A 2-layer TransformerLens model (d_model 64) learns a random FSM with 100 states (two digit
tokens each, 10 random successors). Codebooks (k=1, 1,000 codes, k-means init) are attached
to the residual stream after every layer and fine-tuned with the model frozen. Reported:
(a) the drop in next-token validity accuracy, (b) purity / NMI of codes vs FSM states next
to the best single neuron's F1 and a k-means-on-raw-activations baseline, (c) how often
forcing a state's code makes the prediction follow that state.

    python experiments/codebook_fsm/run.py --out runs/codebook_fsm [--train-steps 1000]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from analysis import evaluate_codes, forcing_trials, validity_accuracy  # noqa: E402

from hiddenlens.codebook import FinetuneConfig, attach, finetune  # noqa: E402
from hiddenlens.codebook.fsm import TokFSM  # noqa: E402
from hiddenlens.report import write_json  # noqa: E402

logger = logging.getLogger("codebook_fsm")


@dataclass
class Config:
    seed: int = 0
    n_states: int = 100
    n_successors: int = 10
    seq_states: int = 32  # states per sequence -> 64 tokens
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    train_steps: int = 1000
    batch_size: int = 64
    lr: float = 2e-3
    n_codes: int = 1000
    k: int = 1
    kmeans_rows: int = 16384
    finetune_steps: int = 400
    dead_code_every: int = 50
    finetune_lr: float = 1e-3
    eval_sequences: int = 256
    forcing_trials: int = 512
    threads: int = 1  # the shared 2-core machine: more threads only spin

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if min(self.train_steps, self.finetune_steps, self.eval_sequences) < 1:
            raise ValueError("steps and eval_sequences must be positive")


def build_model(cfg: Config):
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tl_cfg = HookedTransformerConfig(
        n_layers=cfg.n_layers,
        d_model=cfg.d_model,
        n_heads=cfg.n_heads,
        d_head=cfg.d_model // cfg.n_heads,
        d_mlp=4 * cfg.d_model,
        n_ctx=2 * cfg.seq_states,
        d_vocab=10,
        act_fn="gelu",
        normalization_type="LN",
        seed=cfg.seed,
    )
    return HookedTransformer(tl_cfg)


def lm_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def batches(fsm: TokFSM, cfg: Config, n: int, seed: int):
    for i in range(n):
        tokens, _ = fsm.sample(cfg.batch_size, cfg.seq_states, seed=seed + i)
        yield torch.as_tensor(tokens)


def train(model, fsm: TokFSM, cfg: Config) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=cfg.train_steps)
    losses = []
    model.train()
    for step, tokens in enumerate(batches(fsm, cfg, cfg.train_steps, seed=10_000)):
        loss = lm_loss(model(tokens), tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 50 == 0:
            logger.info("train step %d loss %.4f", step, loss.item())
    model.eval()
    return losses


def train_or_load(model, fsm: TokFSM, cfg: Config, out_dir: Path) -> list[float]:
    """Train, or reuse the weights a previous run with the same training settings saved."""
    from safetensors.torch import load_file, save_file

    key = (
        f"s{cfg.seed}_n{cfg.n_states}x{cfg.n_successors}_d{cfg.d_model}_L{cfg.n_layers}"
        f"_h{cfg.n_heads}_T{cfg.seq_states}_steps{cfg.train_steps}_b{cfg.batch_size}_lr{cfg.lr}"
    )
    path = out_dir / f"fsm_model_{key}.safetensors"
    losses_path = path.with_suffix(".losses.json")
    if path.is_file() and losses_path.is_file():
        logger.info("reusing the trained model %s", path)
        model.load_state_dict(load_file(str(path)))
        model.eval()
        return json.loads(losses_path.read_text())
    losses = train(model, fsm, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    tmp.replace(path)
    write_json(losses_path, losses, indent=None)
    return losses


@torch.no_grad()
def raw_activations(model, tokens: torch.Tensor, hooks: list[str]) -> dict[str, torch.Tensor]:
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hooks)
    return {h: cache[h] for h in hooks}  # [n, seq, d]


def kmeans_rows(model, fsm: TokFSM, cfg: Config, hooks: list[str]) -> dict:
    """About ``cfg.kmeans_rows`` residual rows per hook from fresh sequences (all positions)."""
    n_seq = cfg.kmeans_rows // (2 * cfg.seq_states) + 1
    tokens = torch.as_tensor(fsm.sample(n_seq, cfg.seq_states, seed=555)[0])
    acts = raw_activations(model, tokens, hooks)
    return {h: a.reshape(-1, cfg.d_model) for h, a in acts.items()}


def run(cfg: Config, out_dir: Path) -> dict:
    torch.manual_seed(cfg.seed)
    timings = {}
    fsm = TokFSM(cfg.n_states, cfg.n_successors, seed=cfg.seed)
    model = build_model(cfg)
    t0 = time.perf_counter()
    train_losses = train_or_load(model, fsm, cfg, out_dir)
    timings["train_s"] = time.perf_counter() - t0

    tok_np, states = fsm.sample(cfg.eval_sequences, cfg.seq_states, seed=999)
    tokens = torch.as_tensor(tok_np)
    valid = fsm.valid_next(tok_np, states)
    with torch.no_grad():
        base_logits = model(tokens)
    acc_base = validity_accuracy(base_logits, valid)

    hooks = [f"blocks.{i}.hook_resid_post" for i in range(cfg.n_layers)]
    init = kmeans_rows(model, fsm, cfg, hooks)
    raw_eval = raw_activations(model, tokens, hooks)
    t0 = time.perf_counter()
    cb = attach(model, hooks, cfg.n_codes, cfg.k, init=init, seed=cfg.seed)
    timings["kmeans_s"] = time.perf_counter() - t0
    init_codes = {h: layer.codes.detach().clone() for h, layer in cb.layers.items()}
    with torch.no_grad():
        acc_init = validity_accuracy(cb(tokens), valid)
    ft_cfg = FinetuneConfig(
        steps=cfg.finetune_steps, lr=cfg.finetune_lr, dead_code_every=cfg.dead_code_every
    )
    # Codebook-only: the model stays frozen (model_lr = 0).
    history = finetune(cb, batches(fsm, cfg, cfg.finetune_steps, seed=50_000), lm_loss, ft_cfg)
    timings["finetune_s"] = history["seconds"]
    with torch.no_grad():
        cb_logits = cb(tokens)
    acc_cb = validity_accuracy(cb_logits, valid)

    codes_eval = {h: layer.last_codes[..., 0].numpy() for h, layer in cb.layers.items()}
    assoc = evaluate_codes(cb, codes_eval, raw_eval, init_codes, states, cfg.n_codes)
    forcing = forcing_trials(
        cb, fsm, tokens, states, assoc["state_code"], cfg.forcing_trials, seed=cfg.seed
    )
    cb.detach()
    results = {
        "accuracy/original": acc_base,
        "accuracy/kmeans_init": acc_init,
        "accuracy/codebook": acc_cb,
        "accuracy/drop_points": 100 * (acc_base - acc_cb),
        **assoc["metrics"],
        **forcing,
        **{f"time/{k}": v for k, v in timings.items()},
        "train/final_loss": float(np.mean(train_losses[-20:])),
        "finetune/final_loss": float(np.mean(history["loss"][-20:])),
    }
    write_report(cfg, results, assoc, history, train_losses, out_dir)
    return results


def write_report(cfg, results, assoc, history, train_losses, out_dir: Path) -> None:
    from report_fsm import build_report

    build_report(cfg, results, assoc, history, train_losses).write(out_dir)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/codebook_fsm"))
    for name, value in asdict(Config()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    cfg = Config(**args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(cfg.threads)
    res = run(cfg, out)
    print(
        f"(a) accuracy drop: {res['accuracy/drop_points']:.2f} points "
        f"({res['accuracy/original']:.4f} -> {res['accuracy/codebook']:.4f})"
    )
    print(
        f"(b) code-state purity {res['state/purity_min']:.3f}, NMI {res['state/nmi_min']:.3f} "
        f"(min over layers) vs best-neuron F1 {res['state/neuron_f1_max']:.3f} "
        f"(best layer); k-means-on-raw NMI {res['state/kmeans_nmi_min']:.3f}"
    )
    print(
        f"(c) forcing success: {res['forcing/success_rate']:.3f} "
        f"(unforced baseline {res['forcing/baseline_rate']:.3f})"
    )
    print(json.dumps({k: round(v, 4) for k, v in res.items()}, indent=1))


if __name__ == "__main__":
    main()
