"""Neural variational lower bounds on mutual information: InfoNCE, MINE and SMILE.

A small separable critic f(x, y) = g(x)·h(y) (two MLPs; one matmul scores every (x_i, y_j)
pair of a batch of B samples, which keeps it cheap on CPU); diagonal pairs come from the joint, off-diagonal pairs stand in for the
product of marginals (Poole et al. 2019, "On Variational Bounds of Mutual Information").

- InfoNCE (van den Oord et al. 2018): mean_i [f_ii - log Σ_j e^{f_ij}] + log B; it can
  never exceed log B (the cap, reported), so it saturates for large true MI.
- MINE (Belghazi et al. 2018): the Donsker–Varadhan bound mean f_ii - log mean_{i≠j} e^{f_ij},
  trained with the moving-average gradient correction of the paper.
- SMILE (Song & Ermon 2020, "Understanding the Limitations of Variational Mutual
  Information Estimators"): the DV bound with e^{f} clipped to [e^-τ, e^τ] in the partition
  term, critic trained with the Jensen–Shannon objective.

The critic is trained on one split of the rows and the bound evaluated on the held-out rest,
so the estimate does not reward memorising the training pairs.
"""

from __future__ import annotations

import math

import numpy as np

from hiddenlens._threads import torch_threads
from hiddenlens.info._validate import as_2d, check_not_constant, check_pair, to_bits
from hiddenlens.info.result import MIEstimate

BOUNDS = ("infonce", "mine", "smile")


def _scores(critic, x, y):
    """f(x_i, y_j) = g(x_i)·h(y_j) for all pairs of a batch: [B, B] in one matmul."""
    g, h = critic
    return g(x) @ h(y).T


def _mlp(d_in: int, hidden: int, d_out: int):
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(d_in, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, d_out),
    )


def _offdiag_logmeanexp(s):
    import torch

    b = s.shape[0]
    masked = s.masked_fill(torch.eye(b, dtype=torch.bool), float("-inf"))
    return torch.logsumexp(masked.flatten(), dim=0) - math.log(b * (b - 1))


def bound_value(s, bound: str, clip: float):
    """The bound (nats) from a score matrix [B, B]; what is reported."""
    import torch

    diag = s.diagonal().mean()
    if bound == "infonce":
        return (s.diagonal() - torch.logsumexp(s, dim=1)).mean() + math.log(s.shape[0])
    if bound == "smile":
        return diag - _offdiag_logmeanexp(s.clamp(-clip, clip))
    return diag - _offdiag_logmeanexp(s)


def _objective(s, bound: str, clip: float, state: dict):
    """Training loss (to minimise) for each bound."""
    import torch.nn.functional as F

    if bound == "infonce":
        return -bound_value(s, bound, clip)
    if bound == "smile":  # Jensen–Shannon critic training
        b = s.shape[0]
        sp = F.softplus(s)
        off_mean = (sp.sum() - sp.diagonal().sum()) / (b * (b - 1))
        return F.softplus(-s.diagonal()).mean() + off_mean
    # MINE: unbiased-gradient surrogate with a moving average of E_q[e^f]
    b = s.shape[0]
    e = s.exp()
    off_exp = (e.sum() - e.diagonal().sum()) / (b * (b - 1))
    ma = state.get("ma")
    ma = (
        off_exp.detach()
        if ma is None
        else (1 - state["ema"]) * ma + state["ema"] * off_exp.detach()
    )
    state["ma"] = ma
    return -(s.diagonal().mean() - off_exp / ma)


def _prepare(x, y, seed: int):
    """Validated, shuffled, standardised float tensors (integer labels one-hot)."""
    import torch

    xa, ya = as_2d(x, "x"), as_2d(y, "y")
    check_pair(xa, ya)
    check_not_constant(xa, "x")
    check_not_constant(ya, "y")
    if np.issubdtype(ya.dtype, np.integer) and ya.shape[1] == 1:
        ya = np.eye(int(ya.max()) + 1)[ya[:, 0] - ya.min()]
    perm = torch.randperm(xa.shape[0], generator=torch.Generator().manual_seed(seed))

    def standardise(a):
        t = torch.as_tensor(a, dtype=torch.float32)[perm]
        return (t - t.mean(0)) / t.std(0).clamp_min(1e-8)

    return standardise(xa), standardise(ya)


def _train(xt, yt, bound, hidden, embed_dim, n_steps, bt, lr, clip, ema, seed):
    """Adam on the bound's objective over random batches of the training split."""
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    critic = (_mlp(xt.shape[1], hidden, embed_dim), _mlp(yt.shape[1], hidden, embed_dim))
    opt = torch.optim.Adam([p for m in critic for p in m.parameters()], lr=lr)
    state = {"ema": ema}
    with torch_threads(1):
        for _ in range(n_steps):
            idx = torch.randint(0, xt.shape[0], (bt,), generator=gen)
            loss = _objective(_scores(critic, xt[idx], yt[idx]), bound, clip, state)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return critic


def _evaluate(critic, xe, ye, bound, clip, be) -> list[float]:
    """The bound on consecutive held-out batches of size ``be`` (nats)."""
    import torch

    vals = []
    with torch.no_grad(), torch_threads(1):
        for s in range(0, xe.shape[0] - be + 1, be):
            vals.append(
                float(bound_value(_scores(critic, xe[s : s + be], ye[s : s + be]), bound, clip))
            )
    return vals


def neural_mi(
    x,
    y,
    *,
    bound: str = "infonce",
    hidden: int = 64,
    embed_dim: int = 32,
    n_steps: int = 500,
    batch_size: int = 128,
    lr: float = 1e-3,
    clip: float = 5.0,
    ema: float = 0.01,
    eval_fraction: float = 0.25,
    seed: int = 0,
) -> MIEstimate:
    """Neural lower bound on I(X;Y) in bits (InfoNCE, MINE or SMILE).

    x: [n, d_x], y: [n, d_y] (integer labels are used as one-hot vectors). The critic
    is trained for ``n_steps`` Adam steps on batches of ``batch_size`` from the training
    split; the bound is averaged over batches of the held-out split. ``clip`` is SMILE's τ;
    ``ema`` MINE's moving-average rate.
    """
    if bound not in BOUNDS:
        raise ValueError(f"bound must be one of {BOUNDS}, got {bound!r}")
    for name, v in (("n_steps", n_steps), ("batch_size", batch_size), ("hidden", hidden)):
        if not isinstance(v, (int, np.integer)) or v < (2 if name == "batch_size" else 1):
            raise ValueError(f"{name} must be a positive int (batch_size >= 2), got {v!r}")
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction!r}")
    xt, yt = _prepare(x, y, seed)
    n = xt.shape[0]
    n_eval = int(round(n * eval_fraction))
    if n_eval < 2 or n - n_eval < 2:
        raise ValueError(f"neural bounds need enough rows for both splits, got n={n}")
    critic = _train(
        xt[: n - n_eval],
        yt[: n - n_eval],
        bound,
        hidden,
        embed_dim,
        n_steps,
        min(batch_size, n - n_eval),
        lr,
        clip,
        ema,
        seed,
    )
    be = min(batch_size, n_eval)
    vals = _evaluate(critic, xt[n - n_eval :], yt[n - n_eval :], bound, clip, be)
    params = {
        "bound": bound,
        "hidden": int(hidden),
        "embed_dim": int(embed_dim),
        "n_steps": int(n_steps),
        "batch_size": int(be),
        "lr": float(lr),
        "seed": int(seed),
    }
    if bound == "smile":
        params["clip"] = float(clip)
    return MIEstimate(
        bits=to_bits(float(np.mean(vals))),
        estimator=bound,
        params=params,
        n=n,
        cap=to_bits(math.log(be)) if bound == "infonce" else None,
    )
