"""Outputs of the g-SAE vs TopK run on the causal LM: verdicts, the figure (CE increase and
the paired difference against k, with bootstrap CIs, drawn by
:func:`hiddenlens.viz.layers.plot_layer_curves`), ``metrics.json`` / ``report.html`` (via
:class:`hiddenlens.report.Report`), ``report.md`` and ``gsae_results.json`` (the summary,
one row per SAE, and the per-document values [seeds, docs] with their token counts)."""

from __future__ import annotations

from pathlib import Path

from experiments.gsae_tinylm.run import LABELS, METHODS


def _fmt(s: dict, digits: int = 4) -> str:
    return f"{s['value']:.{digits}f} [{s['ci_low']:.{digits}f}, {s['ci_high']:.{digits}f}]"


def _side(d: dict) -> str:
    """Which method the CI of a g - TopK difference favours."""
    if d["ci_high"] < 0:
        return "g-SAE lower"
    if d["ci_low"] > 0:
        return "TopK lower"
    return "no resolved difference"


def _count(summary: dict, method: str, metric: str) -> tuple[list, list]:
    """(k values where g-SAE is lower, where TopK is lower) with the paired CI off 0."""
    diffs = {k: e[f"{method}-topk"][metric] for k, e in summary.items()}
    return [k for k, d in diffs.items() if d["ci_high"] < 0], [
        k for k, d in diffs.items() if d["ci_low"] > 0
    ]


def verdict(summary: dict, method: str = "gsae") -> str:
    """Does the g-SAE's spliced CE increase beat TopK's (CI of the paired difference < 0)?"""
    wins, losses = _count(summary, method, "ce_increase")
    kl_wins, kl_losses = _count(summary, method, "kl_spliced")
    ks = list(summary)
    if len(wins) == len(ks):
        claim = "reproduces"
    elif wins:
        claim = f"reproduces only at k = {', '.join(map(str, wins))}"
    else:
        claim = "does not reproduce"
    tail = f"; TopK is lower at k = {', '.join(map(str, losses))}" if losses else ""
    return (
        f"{LABELS[method]}: the claim {claim} (CE increase lower than TopK's with the 95% CI "
        f"of the paired difference below 0 at {len(wins)} of {len(ks)} k values{tail}; "
        f"KL lower at {len(kl_wins)}, higher at {len(kl_losses)} of {len(ks)})."
    )


def k_lines(summary: dict) -> list[str]:
    out = []
    for k, e in summary.items():
        for m in ("gsae", "gsae_oracle"):
            d = e[f"{m}-topk"]
            out.append(
                f"k={k} {m} - topk: CE increase {_fmt(d['ce_increase'])} nats "
                f"({_side(d['ce_increase'])}; g lower in {d['ce_increase']['seeds_lower']} "
                f"seeds), KL {_fmt(d['kl_spliced'])} ({_side(d['kl_spliced'])})"
            )
    return out


def figure(summary: dict):
    from hiddenlens.viz.layers import LayerCurves, plot_layer_curves
    from hiddenlens.viz.style import new_grid

    ks = list(summary)
    names = [f"k={k} (L0 {summary[k]['topk']['l0']:.1f})" for k in ks]
    fig, axes = new_grid(2, 1, figsize=(8.0, 7.0))

    def curves(get, ylabel, series, reference=None):
        vals = {LABELS[m]: [get(summary[k], m) for k in ks] for m in series}
        part = {b: {n: [v[b] for v in vs] for n, vs in vals.items()} for b in ("ci_low", "ci_high")}
        return LayerCurves(names, {n: [v["value"] for v in vs] for n, vs in vals.items()},
                           low=part["ci_low"], high=part["ci_high"], ylabel=ylabel,
                           xlabel="k (L0 of the TopK SAE)", reference=reference)  # fmt: skip

    inc = curves(lambda e, m: e[m]["ce_increase"], "spliced CE increase (nats)", METHODS)
    plot_layer_curves(inc, ax=axes[0], title="CE increase when the SAE is spliced in (95% CI)")
    zero = {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0}  # TopK - TopK: keeps the colours

    def paired(e, m):
        return zero if m == "topk" else e[f"{m}-topk"]["ce_increase"]

    diff = curves(paired, "g-SAE - TopK (nats)", METHODS, reference=0.0)
    plot_layer_curves(diff, ax=axes[1], title="Paired difference of the CE increase (95% CI)")
    return fig


def metrics(summary: dict) -> dict[str, float]:
    from hiddenlens._keys import ci_names, metric_key

    out = {}
    for k, e in summary.items():
        out[metric_key("sae", "ce_clean", f"k{k}")] = e["ce_clean"]
        for m in METHODS + ("gsae-topk", "gsae_oracle-topk"):
            for name, s in e[m].items():
                tag = f"{m.replace('-', '_minus_')}_k{k}"
                if isinstance(s, dict):
                    lo, hi = ci_names(name)
                    for key, v in ((name, "value"), (lo, "ci_low"), (hi, "ci_high")):
                        out[metric_key("sae", key, tag)] = s[v]
                else:
                    out[metric_key("sae", name, tag)] = s
    return out


def _table(summary: dict) -> list[dict]:
    rows = []
    for k, e in summary.items():
        for m in METHODS:
            rows.append({
                "k": k, "method": LABELS[m], "L0": round(e[m]["l0"], 2),
                "FVU": round(e[m]["fvu"], 4), "CE clean": round(e["ce_clean"], 4),
                "CE increase [95% CI]": _fmt(e[m]["ce_increase"]),
                "KL [95% CI]": _fmt(e[m]["kl_spliced"]),
                "CE-loss score [95% CI]": _fmt(e[m]["ce_loss_score"]),
            })  # fmt: skip
    return rows


def _setting(args, res: dict) -> str:
    return (
        f"Model {args.model}, hook {args.hook}; SAEs {args.d_sae} latents, k {args.ks}, "
        f"seeds {args.seeds}, {args.tokens:,} training rows each (batch {args.batch}, "
        f"{res['n_train_rows']:,} cached rows from {res['n_train_docs']} training documents), "
        f"g-SAE grad_beta {args.beta} (normalised |W_dec g|). Held out: {len(res['n_ce'])} "
        f"documents, {int(res['n_ce'].sum()):,} CE positions; {args.n_boot} bootstrap "
        f"resamples of documents. Train + evaluate: {res['seconds_train_and_eval']:.0f} s "
        "(2 shared CPU cores under load)."
    )


READING = (
    "How to read it: the plain row is the claim's test, since a deployed g-SAE has no "
    "gradient at inference and selects by plain top-k (as the paper does). The oracle row "
    "selects with the gradient of the CE at the true next token, so it uses the label the CE "
    "is scored on: a lower CE there need not mean a closer next-token distribution (compare "
    "its KL)."
)


def markdown(args, res: dict, summary: dict) -> str:
    from experiments.gsae_tinylm import run

    head = ["# g-SAE vs TopK spliced into a causal LM (Olmo et al., Features that Make a "
            "Difference)", "", run.__doc__.split("\n\n")[1].replace("\n", " "), "",
            "Setting: " + _setting(args, res), ""]  # fmt: skip
    rows = _table(summary)
    cols = list(rows[0])
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    table += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    verdicts = ["## Verdict", "", *[f"- {verdict(summary, m)}" for m in ("gsae", "gsae_oracle")],
                "", READING]  # fmt: skip
    return "\n".join(head + ["## Results", "", *table, "", "Paired differences "
                             "(g-SAE - TopK, seed mean, 95% CI over documents):", "",
                             *[f"- {s}" for s in k_lines(summary)], "", *verdicts,
                             "", "![CE increase vs k](figures/ce_increase.png)", ""])  # fmt: skip


def write_outputs(args, res: dict, summary: dict) -> list[str]:
    from hiddenlens._io import write_json, write_text
    from hiddenlens.report import Report
    from hiddenlens.viz import save_figure

    out = Path(args.out)
    fig = figure(summary)
    save_figure(fig, out / "figures" / "ce_increase.png")
    report = Report("g-SAE vs TopK spliced into a causal LM",
                    config={k: str(v) for k, v in vars(args).items()})  # fmt: skip
    report.add_metrics(metrics(summary))
    sec = report.add_section("Setting", text=_setting(args, res))
    sec = report.add_section("Results", text=" ".join(verdict(summary, m) for m in METHODS[1:]))
    sec.add_figure(fig, "ce_increase_html")
    sec.add_table(_table(summary), caption="seed means; CIs resample held-out documents")
    sec.add_text("\n".join(k_lines(summary)))
    report.write(out)
    per_doc = {m: {str(k): {key: v.tolist() for key, v in d.items()} for k, d in by.items()}
               for m, by in res["per_doc"].items()}  # fmt: skip
    write_json(out / "gsae_results.json", {
        "summary": {str(k): v for k, v in summary.items()}, "saes": res["saes"],
        "per_doc": per_doc, "n_ce": res["n_ce"].tolist(), "n_kl": res["n_kl"].tolist(),
        **{key: res[key] for key in ("n_train_rows", "n_train_docs", "seconds_train_and_eval")},
    })  # fmt: skip
    write_text(out / "report.md", markdown(args, res, summary))
    return k_lines(summary) + [verdict(summary, m) for m in ("gsae", "gsae_oracle")]
