"""Measurements of the TokFSM codebook experiment: accuracy, code-state association,
forcing. See run.py; "Codebook Features" (Tamkin, Taufeeque & Goodman, 2023)."""

from __future__ import annotations

import numpy as np
import torch

from hiddenlens.codebook import best_code_f1, best_neuron_f1, force, jsd, purity_nmi, topk_codes


def validity_accuracy(logits: torch.Tensor, valid: np.ndarray) -> float:
    """Share of positions t >= 1 whose argmax next token the FSM allows."""
    pred = logits.argmax(-1).numpy()  # [n, T]
    ok = np.take_along_axis(valid, pred[..., None], -1)[..., 0]
    return float(ok[:, 1:].mean())


def evaluate_codes(cb, codes_eval, raw_eval, init_codes, states, n_codes) -> dict:
    """Purity / NMI / best-code F1 of codes vs the FSM state at each state's second digit,
    next to the best single neuron's F1 and k-means (the init codes) on raw activations."""
    labels = states.reshape(-1)
    onehot = labels[:, None] == np.arange(states.max() + 1)[None]
    metrics, state_code, joint = {}, {}, {}
    for hook in cb.hook_points:
        codes = codes_eval[hook][:, 1::2].reshape(-1)  # state-end positions
        raw = raw_eval[hook][:, 1::2].reshape(len(labels), -1)
        pn = purity_nmi(codes, labels)
        best = best_code_f1(codes[:, None], labels, n_codes)
        neuron = best_neuron_f1(raw.numpy(), onehot)
        km, _ = topk_codes(raw, init_codes[hook], 1, cb.layers[hook].config.similarity)
        km_pn = purity_nmi(km[:, 0].numpy(), labels)
        metrics.update(
            {
                f"state/purity/{hook}": pn["purity"],
                f"state/nmi/{hook}": pn["nmi"],
                f"state/codes_used/{hook}": pn["n_clusters_used"],
                f"state/code_f1/{hook}": float(best["f1"].mean()),
                f"state/neuron_f1/{hook}": float(neuron["f1"].mean()),
                f"state/kmeans_purity/{hook}": km_pn["purity"],
                f"state/kmeans_nmi/{hook}": km_pn["nmi"],
            }
        )
        state_code[hook] = dict(zip(best["labels"].tolist(), best["code"].tolist()))
        joint[hook] = (codes, labels)
    for name in ("purity", "nmi", "code_f1", "kmeans_purity", "kmeans_nmi"):
        metrics[f"state/{name}_min"] = min(metrics[f"state/{name}/{h}"] for h in cb.hook_points)
    metrics["state/neuron_f1_max"] = max(metrics[f"state/neuron_f1/{h}"] for h in cb.hook_points)
    return {"metrics": metrics, "state_code": state_code, "joint": joint}


@torch.no_grad()
def forcing_trials(cb, fsm, tokens, states, state_code, n_trials: int, *, seed: int) -> dict:
    """Force the code of a random other state at a state-end position and check whether the
    predicted next token is a first digit of one of *that* state's successors."""
    rng = np.random.default_rng(seed)
    out = {}
    for li, hook in enumerate(cb.hook_points):
        hits = base_hits = mode = base_mode = 0
        shifts = []
        for _ in range(n_trials):
            i = int(rng.integers(len(tokens)))
            j = int(rng.integers(states.shape[1]))
            src = int(states[i, j])
            dst = int(rng.choice([s for s in state_code[hook] if s != src]))
            seq = tokens[i : i + 1, : 2 * j + 2]
            base = cb(seq)[0, -1]
            with force(cb, {hook: [state_code[hook][dst]]}, positions=-1):
                forced = cb(seq)[0, -1]
            hits += bool(fsm.valid_first_[dst, int(forced.argmax())])
            base_hits += bool(fsm.valid_first_[dst, int(base.argmax())])
            # Stronger: the prediction is a most likely next digit of the new state.
            counts = np.bincount(fsm.transitions_[dst] // fsm.base, minlength=fsm.base)
            mode += bool(counts[int(forced.argmax())] == counts.max())
            base_mode += bool(counts[int(base.argmax())] == counts.max())
            shifts.append(jsd(forced, base))
        suffix = "" if li == 0 else f"/{hook}"
        out[f"forcing/success_rate{suffix}"] = hits / n_trials
        out[f"forcing/baseline_rate{suffix}"] = base_hits / n_trials
        out[f"forcing/mode_rate{suffix}"] = mode / n_trials
        out[f"forcing/mode_baseline_rate{suffix}"] = base_mode / n_trials
        out[f"forcing/jsd{suffix}"] = float(np.mean(shifts))
    out["forcing/hook"] = 0.0  # index of the hook the unsuffixed keys refer to
    return out
