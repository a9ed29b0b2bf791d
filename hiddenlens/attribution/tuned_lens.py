"""The tuned lens (Belrose et al. 2023, "Eliciting Latent Predictions from Transformers with
the Tuned Lens"), fitted on cached residual activations, against the logit lens.

The logit lens (nostalgebraist 2020) decodes the residual stream ``h_l`` of layer ``l``
with the model's own final norm and unembedding, ``logits = U(norm(h_l))``, as if ``h_l``
already lived in the last layer's basis. The tuned lens first maps it there with a learned
affine *translator* per layer, ``logits = U(norm(A_l h_l + b_l))``, with ``A_l`` initialised
to the identity and ``b_l`` to zero (so an unfitted lens is the logit lens), trained to
minimise the paper's loss, ``KL(p_final || p_lens)`` between the model's final next-token
distribution and the lens's, averaged over tokens and summed over layers; the optimiser is
the paper's: SGD with Nesterov momentum, a linearly decaying learning rate and weight decay
on ``A_l - I``. The unembedding and norm stay frozen.

- :class:`LensDecoder`: a frozen copy of the final norm + unembedding (+ bias), built from a
  TransformerLens model or a Hugging Face causal LM by :func:`lens_decoder` through
  :meth:`ModelHandle.final_norm` / :meth:`ModelHandle.unembedding`;
- :class:`TunedLens`: the scikit-learn-style estimator (``fit(X)`` on a store or dict of row
  aligned ``[n, d]`` residuals of several hooks, the last being the final residual whose
  decoding is the model's output; or pass the model's ``logits`` yourself);
- :class:`LensComparison`: per layer KL to the final distribution and next-token perplexity
  for both lenses (:meth:`TunedLens.evaluate`), with ``to_metrics()``;
- :func:`next_token_ids`: the next token of each cached row from the store's meta columns.
"""

from __future__ import annotations

import copy
import logging
import numbers
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from torch import Tensor, nn

from hiddenlens._keys import metric_key

logger = logging.getLogger(__name__)

__all__ = ["LensComparison", "LensDecoder", "TunedLens", "lens_decoder", "next_token_ids"]


class LensDecoder(nn.Module):
    """``h [..., d] -> logits [..., vocab]``: ``norm(h) @ W_U + b_U``, every weight frozen.

    norm: the model's final norm (copied, so training a lens never touches the model);
    W_U: ``[d, vocab]``; b_U: ``[vocab]`` or None.
    """

    def __init__(self, norm: nn.Module | None, W_U: Tensor, b_U: Tensor | None = None):
        super().__init__()
        if W_U.ndim != 2:
            raise ValueError(f"W_U must be [d_model, vocab], got shape {tuple(W_U.shape)}")
        self.norm = nn.Identity() if norm is None else copy.deepcopy(norm).float()
        self.norm.requires_grad_(False)
        self.register_buffer("W_U", W_U.detach().float().clone())
        bias = torch.zeros(W_U.shape[1]) if b_U is None else b_U.detach().float().clone()
        if bias.shape != (W_U.shape[1],):
            raise ValueError(f"b_U must be [{W_U.shape[1]}], got shape {tuple(bias.shape)}")
        self.register_buffer("b_U", bias.to(self.W_U.device))

    @property
    def d_model(self) -> int:
        return self.W_U.shape[0]

    def forward(self, h: Tensor) -> Tensor:
        return self.norm(h) @ self.W_U + self.b_U


def lens_decoder(model) -> LensDecoder:
    """The final norm + unembedding of a model with an LM head (a TransformerLens model, a
    Hugging Face causal LM, a path or a :class:`~hiddenlens.hooks.ModelHandle`)."""
    from hiddenlens.hooks import load_model

    handle = load_model(model)
    W_U = handle.unembedding()
    if W_U is None:
        raise ValueError(
            f"model {handle.model_id!r} (kind {handle.kind!r}) has no unembedding, so no lens "
            "applies; a lens needs a TransformerLens model or a Hugging Face causal LM"
        )
    norm = handle.final_norm()
    if norm is None:
        raise ValueError(
            f"model {handle.model_id!r}: its final norm was not found (looked for ln_final, "
            "ln_f, norm, final_layer_norm); build LensDecoder(norm, W_U, b_U) yourself"
        )
    if handle.kind == "transformerlens":
        bias = handle.model.b_U
    else:
        bias = getattr(handle.model.get_output_embeddings(), "bias", None)
    return LensDecoder(norm, W_U, bias).to(W_U.device)


def next_token_ids(meta) -> np.ndarray:
    """[n] the token id of the next kept row of the same sample at the next position, -1
    where there is none (the last token, or a dropped special token follows).

    meta: a source's ``meta`` (or a dict) with ``sample_idx``, ``position`` and ``token_id``.
    """
    missing = [c for c in ("sample_idx", "position", "token_id") if c not in meta]
    if missing:
        raise ValueError(f"next-token ids need meta columns {missing}; the meta has {sorted(meta)}")
    sample = np.asarray(meta["sample_idx"], np.int64)
    pos = np.asarray(meta["position"], np.int64)
    tok = np.asarray(meta["token_id"], np.int64)
    if not (sample.shape == pos.shape == tok.shape) or sample.ndim != 1:
        raise ValueError(
            "sample_idx, position and token_id must be 1-D columns of one length, got shapes "
            f"{sample.shape}, {pos.shape}, {tok.shape}"
        )
    order = np.lexsort((pos, sample))
    s, p, t = sample[order], pos[order], tok[order]
    nxt = np.full(len(s), -1, np.int64)
    follows = (s[1:] == s[:-1]) & (p[1:] == p[:-1] + 1)
    nxt[:-1] = np.where(follows, t[1:], -1)
    out = np.empty_like(nxt)
    out[order] = nxt
    return out


@dataclass
class LensComparison:
    """Logit lens vs tuned lens per layer (``hooks``), on ``n_rows`` held-out rows.

    kl_logit / kl_tuned: ``[n_hooks]`` mean KL(p_final || p_lens) in nats; ce_logit /
    ce_tuned: ``[n_hooks]`` next-token cross-entropy (nats) on the ``n_tokens`` rows whose
    next token is known, ce_final the model's own (None without next tokens).
    """

    hooks: list[str]
    kl_logit: np.ndarray
    kl_tuned: np.ndarray
    ce_logit: np.ndarray | None = None
    ce_tuned: np.ndarray | None = None
    ce_final: float | None = None
    n_rows: int = 0
    n_tokens: int = 0

    @property
    def ppl_logit(self) -> np.ndarray | None:
        return None if self.ce_logit is None else np.exp(self.ce_logit)

    @property
    def ppl_tuned(self) -> np.ndarray | None:
        return None if self.ce_tuned is None else np.exp(self.ce_tuned)

    @property
    def ppl_final(self) -> float | None:
        return None if self.ce_final is None else float(np.exp(self.ce_final))

    def tuned_better(self) -> np.ndarray:
        """[n_hooks] True where the tuned lens is strictly closer to the final distribution."""
        return self.kl_tuned < self.kl_logit

    def to_metrics(self) -> dict[str, float]:
        out = {}
        for i, hook in enumerate(self.hooks):
            out[metric_key("attribution", "logit_lens_kl", hook)] = float(self.kl_logit[i])
            out[metric_key("attribution", "tuned_lens_kl", hook)] = float(self.kl_tuned[i])
            if self.ce_logit is not None:
                out[metric_key("attribution", "logit_lens_ppl", hook)] = float(self.ppl_logit[i])
                out[metric_key("attribution", "tuned_lens_ppl", hook)] = float(self.ppl_tuned[i])
        if self.ce_final is not None:
            out[metric_key("attribution", "lens_model_ppl")] = self.ppl_final
        return out


def _kl(target_logp: Tensor, logits: Tensor) -> Tensor:
    """[b] KL(p || q) with log p = target_logp and q = softmax(logits)."""
    return (target_logp.exp() * (target_logp - logits.log_softmax(-1))).sum(-1)


class TunedLens(BaseEstimator):
    """One affine translator per layer into the final layer's basis, trained by KL.

    Parameters: decoder (a :class:`LensDecoder`, or a model / handle / path it is built
    from), n_steps (SGD steps; 0 keeps the identity, i.e. the logit lens), lr (peak rate,
    decayed linearly to 0), batch_size (rows per step), weight_decay (on ``A_l - I``), seed.
    ``fit(X, logits=None, *, hooks=None, final_hook=None)``: X is a store or a dict of
    row-aligned ``[n, d]`` residuals. Learned: ``hooks_``, ``final_hook_``, ``weight_``
    ``[n_hooks, d, d]`` (A_l), ``bias_`` ``[n_hooks, d]``, ``loss_`` (final training loss:
    KL summed over layers).
    """

    def __init__(self, decoder, n_steps=250, lr=1.0, batch_size=512, weight_decay=1e-3, seed=0):
        self.decoder = decoder
        self.n_steps = n_steps
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.seed = seed

    def _check_params(self) -> LensDecoder:
        def real(v) -> bool:  # a string or None must reach the message, not a TypeError
            return isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v)

        n_steps_ok = isinstance(self.n_steps, int) and self.n_steps >= 0
        batch_ok = isinstance(self.batch_size, int) and self.batch_size >= 1
        rates_ok = real(self.lr) and self.lr > 0 and real(self.weight_decay)
        if not (n_steps_ok and batch_ok and rates_ok and self.weight_decay >= 0):
            raise ValueError(
                "TunedLens needs n_steps an int >= 0, batch_size an int >= 1, lr > 0 and "
                f"weight_decay >= 0; got n_steps={self.n_steps!r}, batch_size="
                f"{self.batch_size!r}, lr={self.lr!r}, weight_decay={self.weight_decay!r}"
            )
        dec = self.decoder
        return dec if isinstance(dec, LensDecoder) else lens_decoder(dec)

    def _read(self, X, logits, hooks, final_hook):
        from hiddenlens.store.source import as_source, read_hooks, select_hooks

        src = as_source(X)
        names = select_hooks(src, hooks)
        final = names[-1] if final_hook is None else final_hook
        select_hooks(src, final)  # an unknown final hook names the available ones
        data = read_hooks(src, list(dict.fromkeys([*names, final])))
        d = self.decoder_.d_model
        bad = {h: x.shape[1] for h, x in data.items() if x.shape[1] != d}
        if bad:
            raise ValueError(f"hooks {bad} have widths other than the unembedding's d_model {d}")
        dev = self.decoder_.W_U.device
        H = {h: torch.tensor(x, dtype=torch.float32, device=dev) for h, x in data.items()}
        if logits is not None:
            logits = torch.as_tensor(np.asarray(logits), dtype=torch.float32, device=dev)
            if logits.shape != (len(src), self.decoder_.W_U.shape[1]):
                raise ValueError(
                    f"logits must be [n_rows={len(src)}, vocab={self.decoder_.W_U.shape[1]}], "
                    f"got {tuple(logits.shape)}"
                )
        return H, names, final, logits

    def _target_logp(self, H, final, logits, idx) -> Tensor:
        out = logits[idx] if logits is not None else self.decoder_(H[final][idx])
        return out.log_softmax(-1)

    def fit(self, X, logits=None, *, hooks=None, final_hook=None) -> TunedLens:
        """Train the translators of ``hooks`` (default: every hook of X; ``final_hook``: the
        last) to match the final distribution (``logits`` [n, vocab], else decoded from the
        final hook's rows)."""
        self.decoder_ = self._check_params()
        H, names, final, logits = self._read(X, logits, hooks, final_hook)
        d, dev = self.decoder_.d_model, self.decoder_.W_U.device
        delta = torch.zeros(len(names), d, d, device=dev, requires_grad=True)  # A_l - I
        bias = torch.zeros(len(names), d, device=dev, requires_grad=True)
        trained = [i for i, h in enumerate(names) if h != final or logits is not None]
        self.loss_ = float("nan")
        if trained and self.n_steps > 0:
            self.loss_ = self._train(H, names, final, logits, delta, bias, trained)
        eye = torch.eye(d, device=dev)
        self.weight_ = (delta.detach() + eye).clone()
        self.bias_ = bias.detach().clone()
        self.hooks_, self.final_hook_ = list(names), final
        return self

    def _train(self, H, names, final, logits, delta, bias, trained) -> float:
        opt = torch.optim.SGD([delta, bias], lr=float(self.lr), momentum=0.9, nesterov=True,
                              weight_decay=float(self.weight_decay))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / self.n_steps)
        gen = torch.Generator().manual_seed(int(self.seed))
        n = len(next(iter(H.values())))
        for _ in range(self.n_steps):
            idx = torch.randint(0, n, (min(self.batch_size, n),), generator=gen)
            with torch.no_grad():
                target = self._target_logp(H, final, logits, idx)
            loss = torch.zeros((), device=delta.device)
            for i in trained:
                h = H[names[i]][idx]
                loss = loss + _kl(target, self.decoder_(h + h @ delta[i].T + bias[i])).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        logger.info("tuned lens: %d steps, final KL summed over %d layers %.4g",
                    self.n_steps, len(trained), float(loss.detach()))
        return float(loss.detach())

    def translate(self, h, hook: str) -> Tensor:
        """``A_l h + b_l`` for the layer ``hook``: h ``[..., d]`` in the final layer's basis."""
        check_is_fitted(self, "weight_")
        if hook not in self.hooks_:
            raise ValueError(f"hook {hook!r} has no translator; fitted hooks: {self.hooks_}")
        i = self.hooks_.index(hook)
        h = torch.as_tensor(h, dtype=torch.float32, device=self.weight_.device)
        return h @ self.weight_[i].T + self.bias_[i]

    def lens_logits(self, h, hook: str, *, tuned: bool = True) -> Tensor:
        """Next-token logits ``[..., vocab]`` the tuned (or, ``tuned=False``, logit) lens reads
        from the residual ``h [..., d]`` of ``hook``."""
        check_is_fitted(self, "weight_")
        with torch.no_grad():
            if tuned:
                return self.decoder_(self.translate(h, hook))
            h = torch.as_tensor(h, dtype=torch.float32, device=self.weight_.device)
            return self.decoder_(h)

    def evaluate(self, X, logits=None, next_tokens=None, *, batch_size=1024) -> LensComparison:
        """Both lenses on X's rows of the fitted hooks: mean KL to the final distribution and,
        with ``next_tokens`` [n] (-1 = unknown; see :func:`next_token_ids`), perplexity."""
        check_is_fitted(self, "weight_")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        H, names, final, logits = self._read(X, logits, self.hooks_, self.final_hook_)
        n = len(H[final])
        nxt = None if next_tokens is None else torch.as_tensor(np.asarray(next_tokens)).long()
        if nxt is not None and nxt.shape != (n,):
            raise ValueError(f"next_tokens must be [{n}] (one per row), got {tuple(nxt.shape)}")
        sums = torch.zeros(4, len(names), dtype=torch.float64)  # kl logit/tuned, ce logit/tuned
        ce_final = torch.zeros((), dtype=torch.float64)
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(start + batch_size, n))
            with torch.no_grad():
                target = self._target_logp(H, final, logits, idx)
                known = None if nxt is None else nxt[idx].to(target.device)
                if known is not None:
                    ce_final += _ce(target, known)
                for i, hook in enumerate(names):
                    for j, tuned in enumerate((False, True)):
                        out = self.lens_logits(H[hook][idx], hook, tuned=tuned)
                        sums[j, i] += _kl(target, out).sum().double().cpu()
                        if known is not None:
                            sums[2 + j, i] += _ce(out.log_softmax(-1), known)
        n_tok = 0 if nxt is None else int((nxt >= 0).sum())
        ce = (sums[2:] / max(n_tok, 1)).numpy() if n_tok else (None, None)
        return LensComparison(
            list(names), (sums[0] / n).numpy(), (sums[1] / n).numpy(), ce[0], ce[1],
            float(ce_final / n_tok) if n_tok else None, n, n_tok,
        )


def _ce(logp: Tensor, ids: Tensor) -> Tensor:
    """Summed -log p(next token) over the rows whose id is >= 0 (float64, on the CPU)."""
    keep = ids >= 0
    if not bool(keep.any()):
        return torch.zeros((), dtype=torch.float64)
    picked = logp[keep].gather(1, ids[keep, None])[:, 0]
    return -picked.double().sum().cpu()
