"""The README's shipped-run numbers agree with the shipped metrics files they come from.

``test_readme.py`` runs the README's code; nothing else re-read its prose numbers, so a re-run
that rewrote ``docs/*/metrics.json`` could leave the README quoting the old run. Each entry:
a README phrase holding the numbers, and the metric keys they print (rounded as printed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
NUM = r"(−?-?\d+\.\d+)"

# (metrics file, README pattern with one group per number, the keys in the same order)
CLAIMS = [
    ("docs/tinylm/metrics.json",
     rf"FVU {NUM} / {NUM}, CE-loss score {NUM} / {NUM} \(CE clean {NUM}, spliced\s+{NUM} / {NUM}",
     ["sae/fvu/transformer.h.1", "sae/fvu/transformer.h.3", "sae/ce_loss_score/transformer.h.1",
      "sae/ce_loss_score/transformer.h.3", "sae/ce_clean/transformer.h.1",
      "sae/ce_spliced/transformer.h.1", "sae/ce_spliced/transformer.h.3"]),
    ("docs/tinylm/metrics.json",
     rf"`transformer.h.0` {NUM} → {NUM} nats\)",
     ["attribution/logit_lens_kl/transformer.h.0", "attribution/tuned_lens_kl/transformer.h.0"]),
    ("docs/tinylm/metrics.json",
     rf"best UUAS {NUM} vs {NUM}\)",
     ["probe/structural_uuas/transformer.h.3", "probe/structural_chain_uuas"]),  # the best layer
    ("docs/demo/metrics.json",
     rf"\(1,536 latents, k 16\): FVU {NUM},\s+spliced embedding-cosine score {NUM}",
     ["sae/fvu/encoder.layer.3", "sae/embed_cos_score/encoder.layer.3"]),
    ("docs/demo/metrics.json",
     rf"codebook distilled embedding cosine {NUM} → {NUM}, best code F1 for digits {NUM} vs best\s+"
     rf"neuron {NUM}; CKA\(layer 0, layer 5\) {NUM}; token-kind NC1 {NUM} → {NUM} with depth",
     ["codebook/embedding_cosine_kmeans_init", "codebook/embedding_cosine_finetuned",
      "codebook/code_f1/is_digit", "codebook/neuron_f1/is_digit",
      "probe/cka/encoder.layer.0~encoder.layer.5", "collapse/nc1/encoder.layer.0",
      "collapse/nc1/encoder.layer.5"]),
    ("docs/demo/metrics.json",
     rf"AST-Probe UUAS {NUM} at\s+`encoder.layer.2` vs {NUM} for the right-branching chain",
     ["probe/structural_uuas/encoder.layer.2", "probe/structural_chain_uuas"]),
    ("docs/gsae_tinylm/metrics.json",
     rf"documents: {NUM} \[{NUM}, {NUM}\] / {NUM} \[{NUM}, {NUM}\] / {NUM} \[{NUM}, {NUM}\]",
     [f"sae/ce_increase{s}/gsae_minus_topk_k{k}" for k in (8, 16, 32)
      for s in ("", "_ci_low", "_ci_high")]),
    ("docs/gsae_tinylm/metrics.json",
     rf"FVU {NUM} / {NUM} / {NUM} vs {NUM} / {NUM} / {NUM}:",
     [f"sae/fvu/{m}_k{k}" for m in ("gsae", "topk") for k in (8, 16, 32)]),
]


@pytest.mark.parametrize("path, pattern, keys", CLAIMS, ids=[c[2][0] for c in CLAIMS])
def test_readme_quotes_the_shipped_metrics(path, pattern, keys):
    data = json.loads((ROOT / path).read_text(encoding="utf-8"))
    metrics = data.get("metrics", data)
    found = re.search(pattern, README)
    assert found, f"README no longer has the sentence {pattern!r} quoting {path}"
    for text, key in zip(found.groups(), keys, strict=True):
        printed = float(text.replace("−", "-"))
        decimals = len(text.split(".")[1])
        assert abs(metrics[key] - printed) <= 0.5 * 10**-decimals + 1e-12, (
            f"README prints {text} for {key}; {path} has {metrics[key]:.6g}"
        )


def test_readme_back_patching_row_is_the_seed_range_of_the_shipped_run():
    metrics = json.loads((ROOT / "docs/back_patching/metrics.json").read_text())["metrics"]

    def seeds(name):
        return [v for k, v in metrics.items() if k.rsplit("/", 1)[0] == f"attribution/{name}"]

    found = re.search(
        rf"held-out accuracy {NUM}–{NUM}; some back-patch fixes {NUM}–{NUM} of the failures "
        rf"\(mean {NUM}, [^)]*\) vs {NUM}–{NUM} when another query's state is injected; the "
        rf"best-fixing patch breaks (\d+)% of the correct answers", README)
    assert found, "README's back_patching row no longer has its seed-range sentence"
    acc, fixed, control = (seeds(f"back_patching_{n}") for n in
                           ("two_hop_test_accuracy", "fixed_by_any", "control_fixed_by_any"))
    assert len(acc) == 3
    want = [min(acc), max(acc), min(fixed), max(fixed), sum(fixed) / 3, min(control),
            max(control)]
    for text, value in zip(found.groups()[:7], want, strict=True):
        assert abs(value - float(text)) <= 0.005 + 1e-12, (text, value)
    broken = sum(seeds("back_patching_best_broken")) / 3
    assert abs(100 * broken - int(found.group(8))) <= 0.5 + 1e-9


def _edit_rows(path):
    data = json.loads((ROOT / path).read_text())
    rows = data["rows"] if "rows" in data else data["blocks.1.hook_resid_mid"]["edit_search"]
    return {(r["dictionary"], r["rank_by"]): r for r in rows}


def _loose(pattern: str) -> str:
    return pattern.replace(" ", r"\s+")  # the README wraps its lines anywhere


def _readme_groups(pattern: str, what: str) -> tuple[str, ...]:
    found = re.search(_loose(pattern), README)
    assert found, f"README's {what} sentence changed"
    return found.groups()


def _check_edit_row(row, min_latents: str, mean_set: str | None = None) -> None:
    """A README's ``min_latents`` (mean set size) pair is the shipped edit-search row's."""
    assert row["min_latents"] == int(min_latents), (row, min_latents)
    if mean_set is not None:
        assert abs(row["mean_set_size"] - float(mean_set)) <= 0.005, (row, mean_set)


def test_readme_minimal_edit_search_numbers_are_the_shipped_ones():
    ioi = _edit_rows("docs/sae_principled/edit_search_ioi.json")
    g = _readme_groups(
        r"takes `min_latents` (\d+) for the supervised dictionary \(mean set (\d\.\d+)\), (\d+) "
        r"for the TopK-4 SAE \(mean (\d\.\d+)\), (\d+) for PCA-15 and NMF-15 \(means "
        r"(\d\.\d+) / (\d\.\d+); ranked by distance NMF needs (\d+)", "IOI minimal-edit")
    _check_edit_row(ioi[("supervised", "output")], g[0], g[1])
    _check_edit_row(ioi[("sae_topk4", "output")], g[2], g[3])
    _check_edit_row(ioi[("pca15", "output")], g[4], g[5])
    _check_edit_row(ioi[("nmf15", "output")], g[4], g[6])  # "2 for PCA-15 and NMF-15"
    _check_edit_row(ioi[("nmf15", "distance")], g[7])
    tiny = _edit_rows("docs/sae_principled/edit_search_tinylm.json")
    g = _readme_groups(
        r"needs `min_latents` (\d+) \(mean set (\d\.\d+); ranked by distance (\d+)\) to flip "
        r"the model's capitalised-vs-lower-case log-odds on 90% of items, PCA-16 needs (\d+) "
        r"\(mean (\d\.\d+)\), and the supervised class-mean edit tops out at (\d+\.\d)%",
        "tinylm minimal-edit")
    _check_edit_row(tiny[("sae_topk16", "output")], g[0], g[1])
    _check_edit_row(tiny[("sae_topk16", "distance")], g[2])
    _check_edit_row(tiny[("pca16", "output")], g[3], g[4])
    sup = tiny[("supervised", "output")]
    assert sup["min_latents"] is None and abs(100 * sup["success_at_max"] - float(g[5])) <= 0.05


def test_readme_encoder_start_table_is_the_shipped_sweep():
    """Each FVU in the README's encoder-start table is the seed mean in docs/sae_init."""
    import numpy as np

    runs = json.loads((ROOT / "docs/sae_init/results.json").read_text())["runs"]
    scales = [1.0, 0.75, 1 / 3**0.5, 0.4, 0.25]
    for k in (16, 32):
        row = re.search(rf"^\| {k} \| " + r" \| ".join([NUM] * 5) + r" \|$", README, re.M)
        assert row, f"no k = {k} row in the README's encoder-start table"
        for got, s in zip(row.groups(), scales):
            fvu = [r["fvu"] for r in runs if r["k"] == k and abs(r["scale"] - s) < 1e-9]
            assert len(fvu) == 2 and got == f"{np.mean(fvu):.4f}", (k, s, got)
    bt = json.loads((ROOT / "docs/sae_init/batchtopk_results.json").read_text())["runs"]
    tied, small = (f"{r['fvu']:.4f}" for r in sorted(bt, key=lambda r: -r["scale"]))
    assert f"held-out FVU {tied} for the tied start and {small} at" in " ".join(README.split())


def _table(path, n_keys=1):
    """{first n_keys cells: the row's other cells} for each row of the markdown tables in path."""
    rows = {}
    for line in (ROOT / path).read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and not set(cells[0]) <= set("-"):
            rows[tuple(cells[:n_keys]) if n_keys > 1 else cells[0]] = cells[n_keys:]
    return rows


def _close(printed: str, cell: str) -> bool:
    """The printed number is the table cell's mean (its leading number) rounded as printed."""
    value = float(cell.split()[0])
    return abs(value - float(printed)) <= 0.5 * 10 ** -len(printed.split(".")[1]) + 1e-12


def test_readme_structural_ast_row_is_its_report_table():
    table = _table("experiments/structural_ast/REPORT.md")
    groups = _readme_groups(
        rf"UUAS {NUM} ± {NUM} at layer 2 \(middle peak; {NUM} at layer 5\) vs {NUM} for the "
        rf"right-branching chain and {NUM} ± {NUM} for the embeddings, distance Spearman {NUM} "
        rf"vs {NUM} / {NUM}, depth Spearman {NUM} vs {NUM} for word position; reproduces for "
        rf"distances; root accuracy {NUM} < {NUM} of", "structural_ast row")
    chain, emb = table["right-branching chain / position"], table["embeddings"]
    l2, l5 = table["encoder.layer.2"], table["encoder.layer.5"]
    # columns: distance Spearman, UUAS, depth Spearman, root accuracy ("mean ± sd"); the depth
    # numbers quoted are the best layer's (depth Spearman peaks at layer 3)
    layers = [v for k, v in table.items() if k == "embeddings" or k.startswith("encoder.")]
    assert len(layers) == 7
    best = [max(layers, key=lambda r, c=c: float(r[c].split()[0]))[c] for c in (2, 3)]
    cells = [l2[1], l2[1].split("± ")[1], l5[1], chain[1], emb[1], emb[1].split("± ")[1],
             l2[0], chain[0], emb[0], best[0], chain[2], best[1], chain[3]]
    for printed, cell in zip(groups, cells, strict=True):
        assert _close(printed, cell), (printed, cell)


def test_readme_tuned_lens_row_is_its_report_table():
    table = _table("experiments/tuned_lens/REPORT.md")
    groups = _readme_groups(
        rf"KL at the embedding output {NUM} → {NUM} nats, block 0 {NUM} → {NUM}", "tuned_lens row")
    cells = [*table["transformer.drop"][:2], *table["transformer.h.0"][:2]]
    for printed, cell in zip(groups, cells, strict=True):
        assert _close(printed, cell), (printed, cell)
    # "lower KL and perplexity at every layer": each row before the output's (equal there)
    assert re.search(_loose("the tuned lens has lower KL and perplexity at every layer"), README)
    rows = [v for k, v in table.items() if k.startswith("transformer.")]
    assert len(rows) == 5
    for kl_logit, kl_tuned, ppl_logit, ppl_tuned in (r[:4] for r in rows[:-1]):
        assert float(kl_tuned.split()[0]) < float(kl_logit) and float(ppl_tuned) < float(ppl_logit)


def test_chaos_tables_and_prose_agree():
    """The ChaosMining table of experiments/attribution_eval/README.md is the ``default`` rows of
    its chaos_floor table, and the prose's 100 → 400 rise quotes those rows."""
    doc = (ROOT / "experiments/attribution_eval/README.md").read_text(encoding="utf-8")
    sweep, floor = _table("experiments/attribution_eval/README.md"), _table(
        "experiments/attribution_eval/README.md", n_keys=2)
    for level in ("5", "20", "100", "400"):
        # sweep: R2, chance, five methods; floor: R2, five methods, ...
        assert sweep[level][:1] + sweep[level][2:7] == floor[("default", level)][:6], level
    found = re.search(_loose(
        rf"\(saliency {NUM} ± {NUM} → {NUM} ± {NUM}, IxG {NUM} → {NUM}\)"), doc)
    assert found, "the attribution_eval README's 100 → 400 sentence changed"
    lo, hi = sweep["100"], sweep["400"]
    cells = [lo[2], lo[2].split("± ")[1], hi[2], hi[2].split("± ")[1], lo[3], hi[3]]
    for printed, cell in zip(found.groups(), cells, strict=True):
        assert _close(printed, cell), (printed, cell)
