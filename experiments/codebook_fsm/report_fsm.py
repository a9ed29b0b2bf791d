"""Report of the TokFSM codebook experiment (see run.py)."""

from __future__ import annotations

from dataclasses import asdict

from hiddenlens import metric_key
from hiddenlens.report import Report
from hiddenlens.viz.codebook import plot_code_label_matrix, plot_code_vs_neuron, plot_losses


def build_report(cfg, res: dict, assoc: dict, history: dict, train_losses) -> Report:
    report = Report("Codebook features on TokFSM", config=asdict(cfg))
    report.add_metrics(
        {
            "codebook/accuracy_drop_points": res["accuracy/drop_points"],
            "codebook/code_state_purity_min": res["state/purity_min"],
            "codebook/code_state_nmi_min": res["state/nmi_min"],
            "codebook/best_neuron_f1": res["state/neuron_f1_max"],
            "codebook/forcing_success_rate": res["forcing/success_rate"],
        }
    )
    sec = report.add_section("Setup")
    sec.add_text(
        f"Random FSM with {cfg.n_states} states (two digit tokens each), {cfg.n_successors} "
        f"successors per state. TransformerLens model: {cfg.n_layers} layers, d_model "
        f"{cfg.d_model}, trained {cfg.train_steps} steps (batch {cfg.batch_size}). Codebooks "
        f"of {cfg.n_codes} codes, k={cfg.k}, cosine similarity, k-means init, at every "
        f"hook_resid_post; codebook-only fine-tuning for {cfg.finetune_steps} steps."
    )
    sec.add_figure(
        plot_losses(
            {"model training": train_losses, "codebook fine-tuning (task loss)": history["loss"]}
        ),
        "fsm_losses",
    )
    sec = report.add_section("(a) Accuracy")
    sec.add_text("Share of positions where the argmax next token is allowed by the FSM.")
    sec.add_metrics(_keys(res, "accuracy/"))
    sec = report.add_section("(b) Codes vs FSM states")
    sec.add_text(
        "At each state's second digit the state is fully determined. Purity, NMI and the "
        "best code's F1 per state are computed over those positions; the best single "
        "neuron is thresholded optimally per state (either sign). The k-means baseline "
        "assigns the original model's raw activations to the k-means centroids used to "
        "initialise the codebook: the state is easy to cluster here, so most of the purity "
        "comes from the activations themselves, not from fine-tuning."
    )
    sec.add_metrics(_keys(res, "state/"))
    hooks = list(assoc["joint"])
    sec.add_figure(
        plot_code_vs_neuron(
            {h: (res[f"state/code_f1/{h}"], res[f"state/neuron_f1/{h}"]) for h in hooks},
            title="mean F1 per FSM state",
        ),
        "fsm_code_vs_neuron",
    )
    codes, labels = assoc["joint"][hooks[0]]
    sec.add_figure(
        plot_code_label_matrix(codes, labels=labels, title=f"codes vs states, {hooks[0]}"),
        "fsm_code_state_matrix",
    )
    sec = report.add_section("(c) Forcing state codes")
    sec.add_text(
        "At a random state-end position the code of another random state is forced (k=1, "
        "so the whole code set is replaced) at that position only. Success: the predicted "
        "next token is a first digit of one of the new state's successors. Baseline: the "
        "same check on the unforced prediction. Mode rate: the prediction is a most likely "
        "next digit of the new state (the digit starting the most of its successors)."
    )
    sec.add_metrics(_keys(res, "forcing/"))
    sec = report.add_section("Timings")
    sec.add_metrics(_keys(res, ("time/", "train/", "finetune/")))
    return report


def _keys(res: dict, groups) -> dict[str, float]:
    """Results of the given groups as report keys: ``state/nmi/<hook>`` ->
    ``codebook/state_nmi/<hook>``; timings ``time/<stage>`` -> ``run/seconds/<stage>``."""
    out = {}
    for key, value in res.items():
        if not key.startswith(groups):
            continue
        group, metric, *where = key.split("/", 2)
        if group == "time":
            out[metric_key("run", "seconds", metric)] = value
        else:
            out[metric_key("codebook", f"{group}_{metric}", *where)] = value
    return out
