"""Fine-tune a model with attached codebooks.

Following "Codebook Features" (Tamkin, Taufeeque & Goodman, 2023) the training objective is
the task loss of the model *with* codebooks plus the codebooks' auxiliary losses. By default
only the codes are trained ("codebook-only" fine-tuning); the model's own weights can be
trained too with a small learning rate (the issue's measurement: lr 1e-3 on the model
collapsed the codebook, keep it <= 1e-4). Dead codes are re-seeded periodically from the
latest activations.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, replace

import torch

from hiddenlens.codebook.attach import CodebookModel

logger = logging.getLogger(__name__)


@dataclass
class FinetuneConfig:
    """Schedule of a codebook fine-tuning run.

    steps: optimiser steps (batches are cycled when the iterable is shorter).
    lr: learning rate of the codes (Adam).
    model_lr: learning rate of the model's own parameters; 0 freezes them.
    aux_weight: weight of the codebooks' auxiliary losses.
    dead_code_every: re-seed codes unused for this many steps (0: never).
    grad_clip: max global gradient norm (0: no clipping).
    max_seconds: stop early once this much wall time has passed (0: no limit).
    """

    steps: int = 100
    lr: float = 1e-3
    model_lr: float = 0.0
    aux_weight: float = 1.0
    dead_code_every: int = 0
    grad_clip: float = 1.0
    max_seconds: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        for name in ("lr", "model_lr", "aux_weight", "grad_clip", "max_seconds"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.lr == 0 and self.model_lr == 0:
            raise ValueError("lr and model_lr are both 0: nothing would be trained")
        d = self.dead_code_every
        if isinstance(d, bool) or not isinstance(d, int) or d < 0:
            raise ValueError(f"dead_code_every must be an int >= 0, got {d!r}")


def default_forward(model, batch):
    """model(**batch) for dicts (minus a tokenizer's ``special_tokens_mask``, which is no
    model input), model(*batch) for tuples/lists, else model(batch)."""
    if isinstance(batch, dict):
        return model(**{k: v for k, v in batch.items() if k != "special_tokens_mask"})
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def count_tokens(batch) -> int:
    """Rows processed in a batch: attention-mask sum, else elements of the first tensor
    without its last dim when it is float, else all its elements (token ids)."""
    if isinstance(batch, dict):
        if "attention_mask" in batch:
            return int(batch["attention_mask"].sum())
        batch = next(v for v in batch.values() if isinstance(v, torch.Tensor))
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if batch.is_floating_point():
        return int(batch.numel() // max(batch.shape[-1], 1))
    return int(batch.numel())


def finetune(
    cb: CodebookModel,
    batches: Iterable,
    loss_fn: Callable,
    config: FinetuneConfig | None = None,
    *,
    forward: Callable = default_forward,
    **overrides,
) -> dict:
    """Train the codes (and optionally the model) of ``cb``.

    loss_fn(output, batch) -> scalar task loss of the model output on a batch.
    Returns a history dict: "loss", "aux" (lists per step), "steps" and "dead_replaced" (int),
    "time_limited" (bool: ``max_seconds`` ended it before ``steps``), "tokens" (int), "seconds" (float), "tokens_per_s" (float), "config" (dict).
    """
    config = _config(config, overrides)
    model = cb.model
    flags = {p: p.requires_grad for p in model.parameters()}
    opt, groups = _optimizer(cb, config)
    history = {"loss": [], "aux": [], "dead_replaced": 0, "tokens": 0, "time_limited": False}
    start = time.perf_counter()
    try:
        for step, batch in enumerate(itertools.islice(_cycle(batches), config.steps)):
            out = forward(model, batch)
            task = loss_fn(out, batch)
            aux = cb.codebook_loss()
            loss = task + config.aux_weight * aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                params = [p for g in groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            history["loss"].append(task.item())
            history["aux"].append(float(aux.detach()))
            history["tokens"] += count_tokens(batch)
            if config.dead_code_every and (step + 1) % config.dead_code_every == 0:
                history["dead_replaced"] += _replace_dead(cb, step)
            if config.max_seconds and time.perf_counter() - start > config.max_seconds:
                history["time_limited"] = step + 1 < config.steps
                if history["time_limited"]:
                    logger.warning(
                        "codebook fine-tuning stopped at its %.0f s time limit after %d of %d "
                        "steps", config.max_seconds, step + 1, config.steps)
                break
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
    history["seconds"] = time.perf_counter() - start
    history["tokens_per_s"] = history["tokens"] / max(history["seconds"], 1e-9)
    history["config"] = asdict(config)
    history["steps"] = len(history["loss"])
    logger.info(
        "codebook fine-tuning: %d steps, final loss %.4f", history["steps"], history["loss"][-1]
    )
    return history


def _config(config, overrides: dict) -> FinetuneConfig:
    if config is None:
        return FinetuneConfig(**overrides)
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, got {type(config).__name__}")
    return replace(config, **overrides) if overrides else config


def _optimizer(cb: CodebookModel, config: FinetuneConfig):
    """Adam over the codes (and the model's trainable parameters when model_lr > 0).

    With model_lr == 0 the model's parameters stop requiring gradients (the caller restores
    the flags): gradients still flow *through* the model to the codes, not into its weights.
    """
    model_params = [p for p in cb.model.parameters() if p.requires_grad]
    groups = [{"params": list(cb.parameters()), "lr": config.lr}]
    if config.model_lr > 0:
        cb.snapshot_weights()  # so that detach() can restore the original model
        groups.append({"params": model_params, "lr": config.model_lr})
    else:
        for p in cb.model.parameters():
            p.requires_grad_(False)
    return torch.optim.Adam(groups), groups


def _replace_dead(cb: CodebookModel, step: int) -> int:
    total = 0
    for layer in cb.layers.values():
        if layer.last_input is not None:
            total += layer.replace_dead_codes(layer.last_input, seed=step)
    return total


def _cycle(batches: Iterable):
    """Repeat a re-iterable collection; a one-shot iterator is consumed once."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty or iter(batches) is batches:
            return
