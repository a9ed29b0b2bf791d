"""The main job end to end on tiny settings: the bundled demo config through analyze."""

import json

from experiments.demo import run as demo
from hiddenlens import parse_key
from hiddenlens.analyze.config import SECTION_ORDER


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--fast"]) == 0
    page = (out / "report.html").read_text()
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert "failed" not in page.split("<nav>")[1].split("</nav>")[0]
    for name in SECTION_ORDER:
        assert json.loads((out / "sections" / name / "stage.json").read_text())["complete"]
    assert len(metrics) > 100
    for key in metrics:  # one grammar: <analyzer>/<metric>[/<hook or split>]
        parse_key(key)
    headline = page.split("<h2>Summary</h2>")[1].split("</section>")[0]
    assert "sae/fvu/encoder.layer.3" in headline
    assert (out / "sae_dashboard_encoder.layer.3.html").exists()
    assert "href='sae_dashboard_encoder.layer.3.html'" in page
    assert "Lazy-Neuron" in page and "no LM head, so no CE-loss score" in page
    # the binning I(X;T) headline sits at log2 N and the summary says so
    assert "info/ixt_binning_cap/encoder.layer.5" in metrics
    assert "at the estimator&#x27;s cap" in page or "at the estimator's cap" in page
