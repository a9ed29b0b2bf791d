"""The words for every metric the analyzers write: one :class:`MetricInfo` per
``(analyzer, metric)``, a metric name or a pattern with ``*`` for a stem (``*_compression``).
:mod:`hiddenlens.report.glossary` looks them up and formats them.
"""

from __future__ import annotations

from dataclasses import dataclass

HIGHER, LOWER, NEAR_ONE, NEUTRAL = "higher is better", "lower is better", "1 is ideal", ""


@dataclass(frozen=True)
class MetricInfo:
    """How to say one metric in words; ``reading`` is formatted with value, pct, stem, where."""

    name: str
    unit: str
    direction: str
    reading: str


_SAE = {
    "fvu": MetricInfo(
        "fraction of variance unexplained (FVU)",
        "fraction",
        LOWER,
        "the SAE leaves {pct} of the activations' variance unexplained",
    ),
    "explained_variance": MetricInfo(
        "explained variance", "fraction", HIGHER, "the SAE reconstructs {pct} of the variance"
    ),
    "l0": MetricInfo(
        "active latents per row (L0)",
        "latents",
        NEUTRAL,
        "on average {value:.3g} latents fire per row (fewer = sparser)",
    ),
    "cosine": MetricInfo(
        "cosine(reconstruction, input)",
        "cosine",
        HIGHER,
        "reconstructions point in nearly the input's direction (cos {value:.3f})",
    ),
    "l2_ratio": MetricInfo(
        "reconstruction norm / input norm",
        "ratio",
        NEAR_ONE,
        "reconstructions have {pct} of the input's norm",
    ),
    "relative_reconstruction_bias": MetricInfo(
        "relative reconstruction bias",
        "ratio",
        NEAR_ONE,
        "{value:.3f}: below 1 means the SAE shrinks its outputs",
    ),
    "dead_fraction": MetricInfo(
        "dead latents",
        "fraction of latents",
        LOWER,
        "{pct} of the latents never fired on the evaluation rows",
    ),
    "dense_fraction": MetricInfo(
        "dense latents",
        "fraction of latents",
        LOWER,
        "{pct} of the latents fire on more than 10% of rows",
    ),
    "embed_cos_spliced": MetricInfo(
        "embedding cosine with the SAE spliced in",
        "cosine",
        HIGHER,
        "with the reconstruction in place of the layer, sentence embeddings keep cosine "
        "{value:.3f} with the clean ones",
    ),
    "embed_cos_zero": MetricInfo(
        "embedding cosine with the layer zeroed",
        "cosine",
        NEUTRAL,
        "the zero-ablation baseline: cosine {value:.3f}",
    ),
    "embed_cos_score": MetricInfo(
        "spliced score (embedding)",
        "fraction recovered",
        HIGHER,
        "splicing the SAE in recovers {pct} of what zero-ablating the layer loses",
    ),
    "ce_loss_score": MetricInfo(
        "spliced score (CE loss recovered)",
        "fraction recovered",
        HIGHER,
        "splicing the SAE in recovers {pct} of the next-token loss that zero-ablation costs",
    ),
    "kl_div": MetricInfo(
        "KL(clean || spliced)",
        "nats",
        LOWER,
        "the spliced model's next-token distribution is {value:.3g} nats away",
    ),
    "kl_spliced": MetricInfo(
        "KL(clean || spliced) per token",
        "nats",
        LOWER,
        "with the SAE spliced in, next-token distributions move {value:.3g} nats from the clean ones",
    ),
    "kl_zero": MetricInfo(
        "KL(clean || zero-ablated) per token",
        "nats",
        NEUTRAL,
        "zero-ablating the layer moves next-token distributions {value:.3g} nats (the scale "
        "the spliced KL is judged against)",
    ),
    "ce_clean": MetricInfo(
        "next-token loss, clean model",
        "nats",
        NEUTRAL,
        "the model's own next-token cross-entropy is {value:.3g} nats",
    ),
    "ce_spliced": MetricInfo(
        "next-token loss with the SAE spliced in",
        "nats",
        LOWER,
        "with the SAE's reconstruction in place, the next-token loss is {value:.3g} nats",
    ),
    "ce_zero": MetricInfo(
        "next-token loss with the layer zero-ablated",
        "nats",
        NEUTRAL,
        "zero-ablating the layer raises the next-token loss to {value:.3g} nats",
    ),
}
_PROBE = {
    "structural_uuas": MetricInfo(
        "structural probe UUAS",
        "share of tree edges",
        HIGHER,
        "the minimum spanning tree of the probe's distances recovers {pct} of the syntax "
        "tree's edges",
    ),
    "structural_chain_uuas": MetricInfo(
        "right-branching chain UUAS (baseline)",
        "share of tree edges",
        NEUTRAL,
        "attaching every token to the one before it recovers {pct} of the edges",
    ),
    "structural_distance_spearman": MetricInfo(
        "structural probe distance Spearman",
        "rank correlation",
        HIGHER,
        "predicted and tree distances correlate at {value:.2f} (by sentence length)",
    ),
    "structural_depth_spearman": MetricInfo(
        "structural probe depth Spearman",
        "rank correlation",
        HIGHER,
        "predicted and tree depths correlate at {value:.2f} (by sentence length)",
    ),
    "structural_root_accuracy": MetricInfo(
        "structural probe root accuracy",
        "share of statements",
        HIGHER,
        "the shallowest predicted token is the tree's root in {pct} of statements",
    ),
    "structural_position_root_accuracy": MetricInfo(
        "first-token-as-root accuracy (baseline)",
        "share of statements",
        NEUTRAL,
        "taking the first token as the root is right in {pct} of statements",
    ),
    "structural_n_statements": MetricInfo(
        "statements probed", "count", NEUTRAL, "{value:.0f} statements with trees"
    ),
    "cka": MetricInfo(
        "linear CKA",
        "similarity 0-1",
        NEUTRAL,
        "the two layers' representations have CKA {value:.2f} (1 = same geometry)",
    ),
    "*_compression": MetricInfo(
        "MDL compression for {stem}",
        "x (uniform / online codelength)",
        HIGHER,
        "the online code for {stem} is {value:.2f}x shorter than the uniform code",
    ),
    "*_decodability": MetricInfo(
        "decodability of {stem}",
        "0 = chance, 1 = perfect",
        HIGHER,
        "{stem} is {pct} of the way from chance to perfect",
    ),
    "*_chance": MetricInfo(
        "majority-class accuracy for {stem}",
        "accuracy",
        NEUTRAL,
        "always guessing the commonest class scores {pct}",
    ),
    "*_selectivity": MetricInfo(
        "selectivity for {stem}",
        "accuracy difference",
        HIGHER,
        "the probe beats its control task by {value:.3f}",
    ),
    "*": MetricInfo(
        "linear-probe accuracy for {metric}",
        "held-out accuracy",
        HIGHER,
        "a linear probe recovers {metric} on {pct} of held-out rows",
    ),
}
_INFO = {
    "*ixt*": MetricInfo(
        "I(X;T) ({stem})", "bits", NEUTRAL, "the layer keeps {value:.3g} bits about its input"
    ),
    "*ity*": MetricInfo(
        "I(T;Y) ({stem})", "bits", HIGHER, "the layer carries {value:.3g} bits about the label"
    ),
    "*_cap": MetricInfo(
        "estimator cap ({stem})",
        "bits",
        NEUTRAL,
        "no estimate of this kind can exceed {value:.3g} bits here",
    ),
    "*_bits": MetricInfo(
        "mutual information ({stem})", "bits", NEUTRAL, "{value:.3g} bits of shared information"
    ),
    "local_rank": MetricInfo(
        "local rank",
        "dimensions",
        NEUTRAL,
        "the representation locally spans {value:.3g} dimensions",
    ),
}
_COLLAPSE = {
    "*nc1": MetricInfo(
        "NC1: within- / between-class variability",
        "ratio",
        NEUTRAL,
        "{value:.3g}: classes are {tight} (0 = fully collapsed)",
    ),
    "*cdnv": MetricInfo(
        "class-distance normalised variance (CDNV)",
        "ratio",
        NEUTRAL,
        "{value:.3g} (0 = classes collapsed to points)",
    ),
    "*etf_dist": MetricInfo(
        "distance to a simplex ETF",
        "norm",
        NEUTRAL,
        "{value:.3g} (0 = an exact equiangular tight frame)",
    ),
    "*nc3": MetricInfo(
        "NC3: classifier / class-mean mismatch",
        "norm",
        NEUTRAL,
        "{value:.3g} (0 = classifier rows align with class means)",
    ),
    "mixup_line_dist": MetricInfo(
        "mixed inputs: distance to the class-mean line",
        "x |mu_a - mu_b|",
        NEUTRAL,
        "mixed features lie {value:.3g} class-mean distances off the line through the means",
    ),
    "mixup_pos_err": MetricInfo(
        "mixed inputs: |position - lambda|",
        "fraction of the segment",
        NEUTRAL,
        "mixed features sit {value:.3g} of the segment away from the convex combination",
    ),
    "mixup_pos_corr": MetricInfo(
        "mixed inputs: correlation of position and lambda",
        "Pearson r",
        NEUTRAL,
        "position on the class-mean segment follows the mixing weight with r = {value:.2f}",
    ),
    "mixup_gap_err": MetricInfo(
        "mixed inputs: |logit gap - (2 lambda - 1)|",
        "normalised logit gap",
        NEUTRAL,
        "the logit gap is {value:.3g} away from the convex-combination prediction",
    ),
    "mixup_boundary_share": MetricInfo(
        "mixed inputs near the decision boundary",
        "share of lambda in [0.2, 0.8]",
        NEUTRAL,
        "{pct} of intermediate mixes sit at the a/b decision boundary (convex combination: 1/3)",
    ),
    "mixup_same_class_cos": MetricInfo(
        "same-class mixes: cosine with the classifier row",
        "cosine",
        NEUTRAL,
        "same-class mixes align with their classifier row at cosine {value:.2f}",
    ),
}
_SHORTCUT = {
    "bias": MetricInfo(
        "shortcut bias",
        "reliance, ideal observer = 0",
        LOWER,
        "{value:+.3f} beyond the ideal observer's reliance on the shortcut",
    ),
    "*worst_group*": MetricInfo(
        "worst-group accuracy",
        "accuracy",
        HIGHER,
        "the worst (label x shortcut) group scores {pct}",
    ),
}
_CODEBOOK = {
    "*code_f1": MetricInfo(
        "best code's F1", "F1", HIGHER, "the best single code detects it with F1 {value:.2f}"
    ),
    "*neuron_f1": MetricInfo(
        "best neuron's F1", "F1", NEUTRAL, "the best single neuron detects it with F1 {value:.2f}"
    ),
    "*cosine*": MetricInfo(
        "embedding cosine with codebooks in",
        "cosine",
        HIGHER,
        "outputs keep cosine {value:.3f} with the original model's",
    ),
}
_ATTRIBUTION = {
    "difull": MetricInfo(
        "DiFull score",
        "share of positive attribution",
        HIGHER,
        "{pct} of the positive attribution lies in the cell the explained head can see",
    ),
    "aggatt_difull_*": MetricInfo(
        "AggAtt bin: mean DiFull score of {stem}",
        "share of positive attribution",
        NEUTRAL,
        "the maps in this percentile bin put {pct} of their positive mass in the head's cell",
    ),
    "*completeness*": MetricInfo(
        "IG completeness error",
        "|sum - (f(x) - f(x'))|",
        LOWER,
        "attributions miss the output change by {value:.2g}",
    ),
    "*pearson*": MetricInfo(
        "correlation with activation patching",
        "Pearson r",
        HIGHER,
        "the cheap estimate tracks real patching with r = {value:.2f}",
    ),
    "logit_lens_kl": MetricInfo(
        "logit lens: KL to the final distribution",
        "nats",
        LOWER,
        "decoding this layer as is lands {value:.3g} nats from the model's prediction",
    ),
    "tuned_lens_kl": MetricInfo(
        "tuned lens: KL to the final distribution",
        "nats",
        LOWER,
        "after its learned translator, this layer lands {value:.3g} nats from the prediction",
    ),
    "logit_lens_ppl": MetricInfo(
        "logit lens: next-token perplexity",
        "perplexity",
        LOWER,
        "decoded as is, this layer predicts the next token with perplexity {value:.3g}",
    ),
    "tuned_lens_ppl": MetricInfo(
        "tuned lens: next-token perplexity",
        "perplexity",
        LOWER,
        "through its translator, this layer predicts the next token with perplexity {value:.3g}",
    ),
    "lens_model_ppl": MetricInfo(
        "the model's own next-token perplexity",
        "perplexity",
        LOWER,
        "the model's output predicts the next token with perplexity {value:.3g}",
    ),
    "tuned_lens_better_share": MetricInfo(
        "share of layers where the tuned lens beats the logit lens",
        "fraction",
        HIGHER,
        "the tuned lens is closer to the final distribution at {pct} of the earlier layers",
    ),
    "lens_final_logprob_gap": MetricInfo(
        "decoded final hook vs the model's output",
        "max |log p difference|",
        LOWER,
        "decoding the final hook differs from the model's output by up to {value:.2g} in log-probability",
    ),
}
_LOGITS, _FAILED = "logits", "fraction of failed"
_ATTRIBUTION |= {  # per-head DLA, back-patching (language models), missingness bias (images)
    "dla_logit_diff": MetricInfo("DLA: logit of the top-1 next token minus the runner-up's", _LOGITS, NEUTRAL,
                                 "at the last word the model prefers its top next token by {value:.3g} logits"),
    "dla_total": MetricInfo("DLA: sum of the direct contributions", _LOGITS, NEUTRAL,
                            "the per-component terms add up to {value:.3g} logits"),
    "dla_completeness_abs_error": MetricInfo("DLA completeness error", "|total - logit difference|", LOWER,
                                             "the terms miss the logit difference by {value:.2g}"),
    "dla_heads_sum": MetricInfo("DLA: all attention heads together", _LOGITS, NEUTRAL,
                                "the heads' direct paths contribute {value:+.3g} logits"),
    "dla_top_head": MetricInfo("DLA: the head with the largest |contribution|", _LOGITS, NEUTRAL,
                               "one head alone contributes {value:+.3g} logits"),
    "dla_layer": MetricInfo("DLA: attention + MLP of one layer", _LOGITS, NEUTRAL,
                            "this layer's direct path contributes {value:+.3g} logits"),
    "back_patching_baseline_accuracy": MetricInfo("back-patching: queries answered unpatched", "fraction", NEUTRAL,
                                                  "the top-1 is the actual next token on {pct} of the queries"),
    "back_patching_n_failed": MetricInfo("back-patching: failed queries", "queries", NEUTRAL,
                                         "{value:.0f} queries fail unpatched"),
    "back_patching_n_queries": MetricInfo("back-patching: queries swept", "queries", NEUTRAL,
                                          "{value:.0f} text prefixes swept"),
    "back_patching_fixed_by_any": MetricInfo("back-patching: failures fixed by some back-patch", _FAILED, NEUTRAL,
                                             "injecting a later layer's state earlier fixes {pct} of the failures"),
    "back_patching_best_fixed": MetricInfo("back-patching: failures fixed by the best pair", _FAILED, NEUTRAL,
                                           "the single best (source, target) back-patch fixes {pct} of them"),
    "missingness_dlogit": MetricInfo("missingness bias: |Δ logit| of the clean class", _LOGITS, LOWER,
                                     "removing the region this way moves the class's logit by {value:.3g}"),
    "missingness_kl": MetricInfo("missingness bias: KL(clean || masked)", "nats", LOWER,
                                 "removing the region this way moves the prediction {value:.3g} nats"),
    "missingness_flip_rate": MetricInfo("missingness bias: predictions flipped", "fraction", LOWER,
                                        "{pct} of the predictions change when the region is removed this way"),
    "missingness_dprob": MetricInfo("missingness bias: change of the clean class's probability", "probability",
                                    NEUTRAL, "the predicted class's probability moves by {value:+.3f}"),
}
GLOSSARY: dict[str, dict[str, MetricInfo]] = {
    "sae": _SAE,
    "probe": _PROBE,
    "info": _INFO,
    "collapse": _COLLAPSE,
    "shortcut": _SHORTCUT,
    "codebook": _CODEBOOK,
    "attribution": _ATTRIBUTION,
}
