"""Principled dictionary evaluation on a real model: adapters, spliced approximation, control.

Makelov, Lange & Nanda 2024, "Towards Principled Evaluations of Sparse Autoencoders for
Interpretability and Control". Any feature dictionary is judged by what it does to the
*model*, not only to the activation it reconstructs:

* approximation: the reconstruction x̂ is patched into the model at the hook point and the
  task metric (e.g. the IOI logit difference) is normalised between mean ablation (0) and
  the clean run (1);
* control: attribute a is edited v -> v' through the dictionary at the hook point, the rest
  of the model runs, and we count the items whose output now follows v'.

Every dictionary is wrapped in an adapter (``hiddenlens.sae.principled_adapters``, all
re-exported here) with ``encode(x, labels=None) -> codes``, ``decode(codes) -> x̂`` and
``edit(x, labels, attribute, targets) -> edited x``. Interpretability and the occlusion /
over-splitting flags live in ``hiddenlens.sae.principled_diagnostics``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hiddenlens.sae.principled_adapters import (
    MeanAdapter,
    NMFAdapter,
    PCAAdapter,
    SAEAdapter,
    SupervisedAdapter,
    _np,
    _t,
    _targets,
    check_labels,
    reconstruct,
)

__all__ = [
    "MeanAdapter",
    "NMFAdapter",
    "PCAAdapter",
    "SAEAdapter",
    "SpliceTask",
    "SupervisedAdapter",
    "check_labels",
    "control",
    "reconstruct",
    "run_patched",
    "spliced_approximation",
    "task_activations",
]


@dataclass
class SpliceTask:
    """Items to run, where to read/patch, and how to score the output.

    inputs: model inputs [n, ...] (token ids). hook: hook-point name. position: sequence
    position read and patched (None: the activation is already [n, d]). labels: attribute
    -> [n] values. metric(logits [b, vocab], labels of the batch) -> [b] task metric (higher
    is better, e.g. logit(IO) - logit(S)). answer(labels) -> [n] token id the output should
    be under those labels (for control). logits(output) -> [b, vocab]; default: the last
    position of a [b, seq, vocab] output, or a [b, vocab] output as is.
    """

    inputs: torch.Tensor
    hook: str
    labels: dict[str, np.ndarray]
    metric: Callable
    answer: Callable | None = None
    position: int | None = -1
    batch_size: int = 512
    logits: Callable | None = None

    def __post_init__(self):
        self.labels = check_labels(self.labels, len(self.inputs))
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {self.batch_size}")


def _logits(task: SpliceTask, out) -> torch.Tensor:
    if task.logits is not None:
        return task.logits(out)
    out = getattr(out, "logits", out)
    return out[:, -1] if out.dim() == 3 else out


def _slices(task: SpliceTask):
    for i in range(0, len(task.inputs), task.batch_size):
        yield slice(i, i + task.batch_size)


@torch.no_grad()
def task_activations(model, task: SpliceTask) -> np.ndarray:
    """The activation [n, d] at ``task.hook`` (at ``task.position``) for every item."""
    from hiddenlens.hooks import capture, load_model

    handle = load_model(model)
    chunks = []
    for sl in _slices(task):
        with capture(handle, task.hook) as cap:
            cap.run(task.inputs[sl])
        a = cap[task.hook]
        chunks.append(a if task.position is None else a[:, task.position])
    return torch.cat(chunks).float().numpy()


@torch.no_grad()
def run_patched(model, task: SpliceTask, rows=None) -> torch.Tensor:
    """Logits [n, vocab] with the hook activation (at the position) replaced by ``rows``
    [n, d] (None: the clean run)."""
    from hiddenlens.hooks import load_model, patch

    handle = load_model(model)
    outs = []
    for sl in _slices(task):
        if rows is None:
            outs.append(_logits(task, handle.forward(task.inputs[sl])))
            continue
        new = _t(rows[sl])

        def fn(a, new=new):
            if task.position is None:
                return new.to(a.dtype).reshape(a.shape)
            a = a.clone()
            a[:, task.position] = new.to(a.dtype)
            return a

        with patch(handle, {task.hook: fn}):
            outs.append(_logits(task, handle.forward(task.inputs[sl])))
    return torch.cat(outs)


def _metric(task: SpliceTask, logits: torch.Tensor) -> np.ndarray:
    return _np(task.metric(logits, task.labels)).astype(np.float64)


def spliced_approximation(dictionary, model, task: SpliceTask, *, x=None, mean=None) -> dict:
    """Task metric kept with decode(encode(x)) patched in: (spliced - mean-ablated) /
    (clean - mean-ablated). ``mean``: the ablation value (default: mean of ``x``)."""
    x = task_activations(model, task) if x is None else _np(x)
    if len(x) != len(task.inputs):
        raise ValueError(f"x has {len(x)} rows but the task has {len(task.inputs)} items")
    x_hat = reconstruct(dictionary, x, task.labels)
    mu = x.mean(0) if mean is None else _np(mean)
    clean = _metric(task, run_patched(model, task)).mean()
    spliced = _metric(task, run_patched(model, task, x_hat)).mean()
    ablated = _metric(task, run_patched(model, task, np.tile(mu, (len(x), 1)))).mean()
    den = clean - ablated
    return {
        "metric_clean": float(clean),
        "metric_spliced": float(spliced),
        "metric_mean_ablated": float(ablated),
        "approximation": float((spliced - ablated) / den) if den else float("nan"),
        "fvu": float(((x - x_hat) ** 2).sum() / max(((x - x.mean(0)) ** 2).sum(), 1e-12)),
    }


def control(dictionary, model, task: SpliceTask, attribute: str, targets, *, x=None) -> dict:
    """Edit ``attribute`` to ``targets`` (one v' per item) through the dictionary at the
    hook, run the rest of the model and score whether the output follows v'.

    ld = logit(answer under v') - logit(answer under v), on items where the two answers
    differ. edit_success: fraction with ld > 0 after the edit; edit_top1: fraction whose
    top logit is the new answer; logit_diff_shift: mean change of ld.
    """
    if task.answer is None:
        raise ValueError("control needs task.answer (labels -> expected output token)")
    check_labels(task.labels, len(task.inputs), attribute)
    x = task_activations(model, task) if x is None else _np(x)
    if len(x) != len(task.inputs):
        raise ValueError(f"x has {len(x)} rows but the task has {len(task.inputs)} items")
    tgt = _targets(targets, len(x))
    new_labels = {**task.labels, attribute: tgt}
    old_ans, new_ans = np.asarray(task.answer(task.labels)), np.asarray(task.answer(new_labels))
    moved = old_ans != new_ans
    if not moved.any():
        raise ValueError(f"editing {attribute!r} to these targets never changes the answer")
    edited = np.asarray(dictionary.edit(x, task.labels, attribute, tgt), dtype=np.float32)
    before, after = run_patched(model, task), run_patched(model, task, edited)
    idx = torch.arange(len(x))
    o, nw = torch.as_tensor(old_ans), torch.as_tensor(new_ans)
    ld_b = (before[idx, nw] - before[idx, o]).numpy()[moved]
    ld_a = (after[idx, nw] - after[idx, o]).numpy()[moved]
    return {
        "edit_success": float((ld_a > 0).mean()),
        "edit_top1": float((after.argmax(-1).numpy() == new_ans)[moved].mean()),
        "success_unedited": float((ld_b > 0).mean()),
        "logit_diff_shift": float((ld_a - ld_b).mean()),
        "n_items": float(moved.sum()),
    }
