"""Run comparison on a small SAE sweep: metrics side by side and the frontier's points."""

import json

import pytest

from hiddenlens.cli import main
from hiddenlens.report.compare import compare_runs, sae_points
from hiddenlens.sae import SAEConfig, build_sae
from hiddenlens.sae.io import save_sae

HOOK = "blocks.0.hook_resid_post"
SWEEP = [
    ("topk", 4, 0.30, 0.80),
    ("topk", 16, 0.12, 0.93),
    ("relu", 9, 0.25, 0.85),
    ("relu", 30, 0.10, 0.95),
]


def _sweep(root):
    """Two runs, each a directory of SAEs (cfg.json + metrics.json per sub-directory)."""
    runs = {}
    for r, part in enumerate((SWEEP[:2], SWEEP[2:])):
        run = root / f"sweep{r}"
        for arch, l0, fvu, score in part:
            sub = run / f"{arch}_{l0}"
            k = 4 if arch == "topk" else None
            save_sae(build_sae(SAEConfig(d_in=8, d_sae=32, architecture=arch, k=k)), sub)
            metrics = {
                f"sae/l0/{HOOK}": l0,
                f"sae/fvu/{HOOK}": fvu,
                f"sae/ce_loss_score/{HOOK}": score,
            }
            (sub / "metrics.json").write_text(json.dumps(metrics))
        (run / "metrics.json").write_text(json.dumps({"metrics": {"sae/seconds": 1.0 + r}}))
        runs[run.name] = run
    return runs


def test_every_sae_becomes_one_point_with_its_architecture(tmp_path):
    runs = _sweep(tmp_path)
    points = sae_points(runs["sweep0"]) + sae_points(runs["sweep1"])
    got = sorted((p.architecture, p.l0, p.fvu, p.spliced_score) for p in points)
    assert got == sorted((a, lo, f, s) for a, lo, f, s in SWEEP)
    assert {p.spliced_metric for p in points} == {"ce_loss_score"} and {p.hook for p in points} == {
        HOOK
    }


def test_comparison_page_draws_the_frontier_per_hook(tmp_path):
    runs = _sweep(tmp_path)
    page = compare_runs(list(runs.values()), tmp_path / "cmp")
    figs = {p.name for p in (tmp_path / "cmp" / "figures").iterdir()}
    assert {f"frontier_fvu_{HOOK}.png", f"frontier_spliced_score_{HOOK}.png"} <= figs
    twin = json.loads(
        (tmp_path / "cmp" / "figures" / f"frontier_fvu_{HOOK}.interactive.json").read_text()
    )
    by_arch = {t["name"]: (t["x"], t["y"]) for t in twin["data"]}
    assert by_arch == {"relu": ([9, 30], [0.25, 0.10]), "topk": ([4, 16], [0.30, 0.12])}
    text = page.read_text()
    assert "sweep0" in text and "sweep1" in text and "Metrics side by side" in text
    rows = json.loads((tmp_path / "cmp" / "report.json").read_text())["sections"][-1]["blocks"][0]
    seconds = next(r for r in rows["payload"] if r["key"] == "sae/seconds")
    assert seconds["sweep0"] == 1.0 and seconds["sweep1"] == 2.0


def test_cli_compare_and_bad_input(tmp_path, capsys):
    runs = _sweep(tmp_path)
    out = tmp_path / "c"
    assert main(["report", "--compare", *map(str, runs.values()), "--out", str(out)]) == 0
    assert (out / "report.html").exists() and "comparison written" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="do not exist"):
        compare_runs([tmp_path / "nope"], out)
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert set(config["runs"]) == {"sweep0", "sweep1"}
