"""Outputs of the back-patching run: per-seed and summary metrics, the figures (the
fixed-share heat map by :func:`hiddenlens.viz.attribution.plot_back_patching`, the control's,
and the bridge's logit-lens curves by :func:`hiddenlens.viz.layers.plot_layer_curves`),
report.html / metrics.json (:class:`hiddenlens.report.Report`) and report.md."""

from __future__ import annotations

import warnings

import numpy as np

#: papers.md: "up to 57% of failed 2-hop queries are fixed by some back-patch"
PAPER_FIXED = 0.57


def broken_by_any(sweep) -> float:
    """Share of the correct queries that at least one back-patch (j, i < j) breaks."""
    if not sweep.baseline.any():
        return float("nan")
    n = len(sweep.hook_points)
    pairs = sweep.correct[np.tril(np.ones((n, n), bool), k=-1)]  # [n_pairs, n_queries]
    return float((~pairs[:, sweep.baseline]).any(0).mean())


def seed_metrics(r: dict) -> dict[str, float]:
    """Flat metrics of one seed: attribution/<name>/seed<k>."""
    from hiddenlens._keys import metric_key

    sweep, control = r["sweep"], r["control"]
    best = sweep.best()
    broken = sweep.broken_fraction()
    j, i = (sweep.hook_points.index(best[0]), sweep.hook_points.index(best[1])) if best[0] else (0, 0)
    vals = {f"back_patching_{k}": v for k, v in r["acc"].items()}
    vals |= {k.split("/")[1]: v for k, v in sweep.to_metrics().items()}
    vals |= {"back_patching_n_queries": float(r["n_queries"]),
             "back_patching_control_fixed_by_any": control.fixed_by_any(),
             "back_patching_control_best_fixed": control.best()[2],
             "back_patching_broken_by_any": broken_by_any(sweep),
             "back_patching_best_broken": float(broken[j, i]) if best[0] else float("nan"),
             "back_patching_mean_broken": float(np.nanmean(broken)) if sweep.baseline.any()
             else float("nan")}  # fmt: skip
    return {metric_key("attribution", k, f"seed{r['seed']}"): float(v) for k, v in vals.items()}


SUMMARY = ("baseline_accuracy", "fixed_by_any", "control_fixed_by_any", "best_fixed",
           "broken_by_any", "best_broken", "two_hop_test_accuracy")  # fmt: skip


def summary(results: list[dict]) -> dict:
    """Mean / min / max over seeds of the headline numbers, and the seed-mean grids."""
    per = [seed_metrics(r) for r in results]
    s = {}
    for name in SUMMARY:
        v = np.array([m[f"attribution/back_patching_{name}/seed{r['seed']}"]
                      for m, r in zip(per, results)])  # fmt: skip
        s[name] = {"mean": float(np.nanmean(v)), "min": float(np.nanmin(v)),
                   "max": float(np.nanmax(v)), "values": v.tolist()}  # fmt: skip
    with warnings.catch_warnings():  # the cells with i >= j are NaN in every seed
        warnings.simplefilter("ignore", RuntimeWarning)
        s["fixed"] = np.nanmean([r["sweep"].fixed_fraction() for r in results], 0)
        s["broken"] = np.nanmean([r["sweep"].broken_fraction() for r in results], 0)
        s["control"] = np.nanmean([r["control"].fixed_fraction() for r in results], 0)
    s["hooks"] = results[0]["sweep"].hook_points
    s["metrics"] = {k: v for m in per for k, v in m.items()}
    return s


def top_pairs(s: dict, k: int = 3) -> list[tuple[str, str, float, float, float]]:
    """The k back-patches that fix the most failures (seed mean): (source, target, fixed,
    control fixed, broken)."""
    flat = np.where(np.isnan(s["fixed"]), -1.0, s["fixed"]).ravel()
    out = []
    for idx in np.argsort(-flat, kind="stable")[:k]:
        j, i = np.unravel_index(idx, s["fixed"].shape)
        if flat[idx] >= 0:
            out.append((s["hooks"][j], s["hooks"][i], float(s["fixed"][j, i]),
                        float(s["control"][j, i]), float(s["broken"][j, i])))  # fmt: skip
    return out


def pooled(results: list[dict], key: str = "sweep"):
    """One BackPatchingSweep over the queries of every seed (same hooks)."""
    from hiddenlens.attribution import BackPatchingSweep

    sw = [r[key] for r in results]
    return BackPatchingSweep(np.concatenate([s.correct for s in sw], -1),
                             np.concatenate([s.baseline for s in sw]), sw[0].hook_points, -1)  # fmt: skip


def verdict(s: dict) -> tuple[str, list[str]]:
    """Reproduces: in every seed some back-patch fixes >= 30% of the failures and >= 10
    points more than the cross-query control; partly: the margin over the control is >= 10
    points on the seed mean only, or the share fixed is below 30%; otherwise it does not."""
    fixed = np.array(s["fixed_by_any"]["values"])
    margin = fixed - np.array(s["control_fixed_by_any"]["values"])
    beats = bool(np.all(margin >= 0.10))
    large = bool(np.all(fixed >= 0.30))
    word = ("reproduces" if beats and large else
            "partly reproduces" if margin.mean() >= 0.10 else "does not reproduce")  # fmt: skip
    lines = [
        f"- Failed queries fixed by some back-patch, per seed: "
        f"{', '.join(f'{v:.2f}' for v in fixed)} (mean {fixed.mean():.2f}; paper: up to "
        f"{PAPER_FIXED:.2f}).",
        f"- Cross-query control (another query's state at the same layers), per seed: "
        f"{', '.join(f'{v:.2f}' for v in s['control_fixed_by_any']['values'])}; margin "
        f"{', '.join(f'{v:+.2f}' for v in margin)}: **{'≥' if beats else 'not ≥'} 10 points in "
        f"every seed**.",
        f"- Correct queries broken by some back-patch: mean {s['broken_by_any']['mean']:.2f} "
        f"(seed range {s['broken_by_any']['min']:.2f}–{s['broken_by_any']['max']:.2f}); by the "
        f"best-fixing patch: {s['best_broken']['mean']:.2f}.",
    ]
    return word, lines


def figures(results: list[dict], s: dict) -> dict:
    """name -> matplotlib figure."""
    from hiddenlens.viz.attribution import plot_back_patching
    from hiddenlens.viz.layers import LayerCurves, plot_layer_curves

    lens = [r["lens"] for r in results]
    series = {f"{w} ({'e2' if w == 'bridge' else 'e3'}), {c} queries":
              np.nanmean([x[f"{w}_{c}"] for x in lens], 0)
              for w in ("bridge", "answer") for c in ("correct", "failed")}  # fmt: skip
    curves = LayerCurves(lens[0]["labels"], series, ylabel="share top-1 at the last position",
                         xlabel="residual stage (logit lens)", ylim=(0.0, 1.0))  # fmt: skip
    control = pooled(results, "control")
    return {
        "back_patching": plot_back_patching(pooled(results)),
        "back_patching_control": plot_back_patching(
            control, title=f"control (another query's state): {control.fixed_by_any():.0%} "
            f"of {int(control.failed.sum())} failed fixed"),
        "bridge_lens": plot_layer_curves(curves, title="logit lens at the last position "
                                         "(seed mean)"),
    }  # fmt: skip


def _rows(results: list[dict]) -> list[dict]:
    rows = []
    for r in results:
        sw, c = r["sweep"], r["control"]
        rows.append({"seed": r["seed"], "one-hop acc": round(r["acc"]["one_hop_accuracy"], 3),
                     "two-hop train acc": round(r["acc"]["two_hop_train_accuracy"], 3),
                     "held-out queries (both hops known)": r["n_queries"],
                     "two-hop acc (baseline)": round(float(sw.baseline.mean()), 3),
                     "failed": int(sw.failed.sum()),
                     "fixed by any": round(sw.fixed_by_any(), 3),
                     "control fixed by any": round(c.fixed_by_any(), 3),
                     "best pair fixes": round(sw.best()[2], 3),
                     "correct broken by any": round(broken_by_any(sw), 3)})  # fmt: skip
    return rows


def _md_table(rows: list[dict]) -> list[str]:
    cols = list(rows[0])
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols),
            *["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]]  # fmt: skip


def _lens_rows(results: list[dict]) -> list[dict]:
    """Per residual stage: seed-mean share of bridge / answer top-1, correct vs failed."""
    lens = [r["lens"] for r in results]
    rows = []
    for k, label in enumerate(lens[0]["labels"]):
        row = {"stage": label}
        for key in ("bridge_correct", "bridge_failed", "answer_correct", "answer_failed"):
            row[key.replace("_", " ")] = round(float(np.nanmean([x[key][k] for x in lens])), 3)
        rows.append(row)
    return rows


def setting(args, results: list[dict]) -> str:
    secs = [r["seconds"] for r in results]
    return (
        f"Task: {args.entities} entities, {args.relations} relations (random maps), "
        f"{args.entities * args.relations} one-hop facts (all trained) and "
        f"{args.entities * args.relations ** 2} two-hop queries ({1 - args.test_share:.0%} "
        f"trained, {args.test_share:.0%} held out). Model: TransformerLens, {args.layers} layers, "
        f"d_model {args.d_model}, 4 heads, LayerNorm; full-batch AdamW lr {args.lr}, weight "
        f"decay 0.1, {args.steps} steps. Seeds {', '.join(str(r['seed']) for r in results)} "
        f"(each seed draws its own task and model). Back-patches: every (source j, target "
        f"i < j) over the {args.layers + 1} residual stages at the last position "
        f"({args.layers * (args.layers + 1) // 2} pairs); a query counts as fixed when the top "
        f"token is its answer. {np.mean(secs):.0f} s per seed on 2 shared CPU cores."
    )


def markdown(args, results: list[dict], s: dict) -> str:
    word, checks = verdict(s)
    pairs = ["| source j → target i | fixed (of failed) | control fixed | correct broken |",
             "|---|---|---|---|"]  # fmt: skip
    pairs += [f"| {a} → {b} | {f:.3f} | {c:.3f} | {br:.3f} |" for a, b, f, c, br in top_pairs(s)]
    cmd = f"python -m experiments.back_patching.run --out {args.out} --seeds {args.seeds}"
    return "\n".join([
        "# Back-patching on a tiny model trained on two-hop queries", "",
        "Claim (Biran et al. 2024, \"Hopping Too Late\"): on two-hop queries whose two facts the "
        "model knows but whose composition it gets wrong, injecting a later layer's hidden state "
        "at the last position into an earlier layer makes the model answer correctly in a large "
        f"share of cases (up to {PAPER_FIXED:.0%} of the failures in papers.md). "
        f"**Verdict on this toy: {word}.**", "", *checks, "",
        "Setting: " + setting(args, results), "",
        "## Per seed", "", *_md_table(_rows(results)), "",
        "## The back-patches that fix the most (seed mean)", "", *pairs, "",
        "## Is the bridge entity decodable at the last position? (logit lens, top-1 share)", "",
        *_md_table(_lens_rows(results)), "",
        "Figures: `figures/back_patching.png` (share of failed queries each back-patch fixes, "
        "pooled over seeds), `figures/back_patching_control.png`, `figures/bridge_lens.png`.", "",
        f"Command: `{cmd}{' --fast' if args.fast else ''}`.", "",
    ])  # fmt: skip


def write_outputs(args, results: list[dict]) -> list[str]:
    """Write report.html, metrics.json, config.json, figures/ and report.md; return the
    verdict lines."""
    from hiddenlens._io import write_text
    from hiddenlens.report import Report
    from hiddenlens.viz.save import save_figure

    s = summary(results)
    figs = figures(results, s)
    for name, fig in figs.items():
        save_figure(fig, args.out / "figures" / f"{name}.png")
    report = Report("Back-patching on two-hop queries", config={k: str(v) for k, v in
                                                                 vars(args).items()})  # fmt: skip
    report.add_metrics(s["metrics"])
    word, checks = verdict(s)
    report.add_section("Setting", text=setting(args, results))
    sec = report.add_section("Results", text=f"Verdict: {word}. " + " ".join(checks))
    sec.add_table(_rows(results), caption="per seed")
    for name, fig in figs.items():
        sec.add_figure(fig, f"{name}_html")
    sec.add_table(_lens_rows(results), caption="logit lens at the last position, top-1 share")
    report.write(args.out)
    write_text(args.out / "report.md", markdown(args, results, s))
    return [f"Verdict: {word}", *checks]
