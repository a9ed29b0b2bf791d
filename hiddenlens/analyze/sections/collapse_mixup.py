"""Mixed-input geometry for classifiers, run by :mod:`hiddenlens.analyze.sections.collapse`.

Fisher, Meng & Papyan, "Pushing Boundaries: Mixup's Influence on Neural Collapse" (ICLR
2024): the last-layer features of mixed inputs x = λ x_a + (1 − λ) x_b are *not* the convex
combination λ μ_a + (1 − λ) μ_b of the clean class means; a network trained with mixup puts
them in channels along the a/b decision boundary. For an ``nn.Sequential`` classifier on tensor
examples whose last module is an ``nn.Linear`` over the label's classes, the examples of the
commonest classes are mixed pairwise at λ = 0, 0.1, …, 1, their features at the head's input
are measured against the clean class means and the head
(:func:`hiddenlens.collapse.mixup_geometry`): position on the μ_b → μ_a segment (t = λ in the
convex-combination picture), distance to that line, normalised logit gap (0 on the boundary).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import torch

LAMS = np.linspace(0.0, 1.0, 11)
N_PER = 8  # random (x_a, x_b) partners per class pair and λ


def _class_ids(ctx, name: str, y: np.ndarray):
    """The label's values as the head's class indices, or a reason they are not: labels are
    stored as codes 0..n-1 of their sorted values (``ctx.labels.names``), so a label with
    values {0, 4, 8} must be decoded before its classes index the head's outputs."""
    names = ctx.labels.names.get(name)
    if not names:
        return y
    try:
        ids = np.array([int(names[int(c)]) for c in range(len(names))], dtype=np.int64)
    except (TypeError, ValueError):
        return f"its values ({', '.join(map(str, list(names)[:4]))}, ...) are not class indices"
    return ids[y]


def _head(ctx, y: np.ndarray):
    """(head module name, head) or a reason the measurement does not apply."""
    from torch import nn

    model = ctx.handle.model
    if ctx.texts is not None or not isinstance(model, nn.Sequential):
        return "it needs an nn.Sequential classifier on tensor examples"
    name, head = list(model.named_children())[-1]
    if not isinstance(head, nn.Linear):
        return f"the model's last module ({name}: {type(head).__name__}) is not an nn.Linear head"
    if ctx.cfg.cache.rows == "position":
        return "it needs one label per example (rows are per position here)"
    if len(y) > len(ctx.data.data):
        return f"{len(y)} label rows for {len(ctx.data.data)} examples: not one row per example"
    if y.min() < 0 or y.max() >= head.out_features:
        return f"the label's classes are not the head's {head.out_features} outputs"
    return name, head


def _features(ctx, hook: str, x: torch.Tensor, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(features at ``hook`` [n, d], the model's top-1 [n]), ``batch`` examples per pass."""
    from hiddenlens.hooks import capture

    feats, top = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            with capture(ctx.handle, [hook], stop_early=False) as cap:
                out = ctx.handle.forward(x[i : i + batch])
            feats.append(cap[hook].reshape(min(batch, len(x) - i), -1).float().cpu().numpy())
            top.append(out.argmax(1).cpu().numpy())
    return np.concatenate(feats), np.concatenate(top)


def run_mixup(ctx, cfg, sec, name: str, y: np.ndarray) -> tuple[dict[str, float], str | None]:
    """Metrics ``collapse/mixup_*/<head>:input`` and a figure of t and g against λ, or why not."""
    from hiddenlens.collapse import accumulate, mix_pairs, mixup_geometry
    from hiddenlens.viz.collapse import plot_nc_curves

    y = _class_ids(ctx, name, y)
    if isinstance(y, str):
        return {}, y
    found = _head(ctx, y)
    if isinstance(found, str):
        return {}, found
    head_name, head = found
    x = ctx.data.data[: len(y)]  # row i is example i; max_rows may cache fewer than all
    x = (x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))).float()
    hook = f"{head_name}:input"
    clean, top1 = _features(ctx, hook, x)
    acc = (top1 == y).mean()
    if acc < 0.5:
        return {}, (f"the model's top-1 matches {name!r} on {acc:.0%} of examples, so the head's "
                    "classes are not that label's")
    counts = np.bincount(y)
    classes = np.argsort(-counts, kind="stable")[: cfg.mixup_classes]
    classes = np.sort(classes[counts[classes] > 0])
    pairs = list(combinations(classes.tolist(), 2)) + [(c, c) for c in classes.tolist()]
    stats = accumulate([(clean, y)])
    xm, ya, yb, lam = mix_pairs(x, y, pairs, LAMS, n_per=N_PER, seed=ctx.seed)
    geo = mixup_geometry(_features(ctx, hook, torch.as_tensor(xm))[0], lam, ya, yb, stats,
                         classifier=head)
    curve = geo.curve(len(LAMS))
    lines = {"position t": (curve["lam"], curve["position"]),
             "logit gap g": (curve["lam"], curve["gap"]),
             "convex combination: t": (curve["lam"], curve["lam"]),
             "convex combination: g": (curve["lam"], 2 * curve["lam"] - 1)}
    sec.add_figure(plot_nc_curves(lines, logy=False, xlabel="λ (weight of class a)",
                                  ylabel="value", title=f"{name}: mixed inputs at {hook}"),
                   f"mixup_{name}", caption=f"cross-class mixes of {len(classes)} classes, "
                   f"{N_PER} pairs per λ: position on the μ_b→μ_a segment and normalised logit "
                   "gap, against the convex-combination picture")
    m = geo.to_metrics(hook)
    share = m[f"collapse/mixup_boundary_share/{hook}"]
    sec.add_text(f"Mixup geometry (Fisher et al. 2024) at {hook}, label {name!r} (top-1 matches "
                 f"it on {acc:.0%}): distance of mixed features to the class-mean line "
                 f"{m[f'collapse/mixup_line_dist/{hook}']:.3g} (× ‖μ_a − μ_b‖); share of "
                 f"λ ∈ [0.2, 0.8] within 0.2 of the decision boundary {share:.2f} (a convex "
                 "combination puts 1/3 there; mixup-trained nets gather more).")
    return m, None
