import json

import plotly.graph_objects as go
import pytest

from hiddenlens.report import Report
from hiddenlens.report.glossary import describe, lookup
from hiddenlens.report.rebuild import rebuild_report
from hiddenlens.viz.style import new_figure


def test_metrics_are_said_in_words_with_unit_and_direction():
    d = describe("sae/fvu/encoder.layer.3", 0.17)
    assert d.name.startswith("fraction of variance unexplained") and d.where == "encoder.layer.3"
    assert d.direction == "lower is better"
    assert d.reading == "the SAE leaves 17.0% of the activations' variance unexplained"
    assert describe("sae/l0/h", 32.0).direction == ""  # neither better nor worse
    info, stem = lookup("probe", "is_digit_compression")
    assert stem == "is_digit" and "MDL" in info.name
    assert describe("probe/is_digit/encoder.layer.1", 0.9).reading.endswith(
        "90.0% of held-out rows"
    )
    assert describe("sae_fvu/encoder.layer.3", 0.1) is None  # outside the grammar: raw key
    assert describe("sae/fvu/h", None).reading == "not computed (missing)"


def test_an_estimate_at_its_cap_carries_the_caveat():
    metrics = {"info/binning_bits/l5": 10.0, "info/binning_cap/l5": 10.0}
    d = describe("info/binning_bits/l5", 10.0, metrics)
    assert d.caveat and "cap (10 bits)" in d.caveat and "sample size" in d.caveat
    assert describe("info/binning_bits/l5", 6.0, metrics).caveat is None
    assert describe("info/binning_bits/l5", 10.0, {}).caveat is None  # no cap known


def test_summary_shows_words_and_folds_the_keys(tmp_path):
    report = Report("r")
    report.add_metrics({"sae/fvu/layer.3": 0.17, "custom_number": 3})
    page = report.write(tmp_path).read_text()
    summary = page[page.index("<section id='summary'>") :]
    summary = summary[: summary.index("</section>")]
    assert "the SAE leaves 17.0% of the activations" in summary
    assert "↓ lower is better" in summary and "layer.3" in summary
    keys = summary[summary.index("<details>") :]
    assert "sae/fvu/layer.3" in keys and "custom_number" in keys
    assert "sae/fvu/layer.3" not in summary[: summary.index("<details>")]


def test_interactive_twin_is_shown_on_screen_and_png_kept_for_print(tmp_path):
    fig, ax = new_figure()
    ax.plot([0, 1], [0, 1])
    report = Report("r")
    report.add_section("s").add_figure(fig, "curve", interactive=go.Figure(go.Scatter(y=[0, 1])))
    page = report.write(tmp_path).read_text()
    body = page[page.index("<body>") :]
    screen, printed = (
        body.index("<div class='screen-only'>"),
        body.index("<div class='print-only'>"),
    )
    assert screen < body.index("plotly-graph-div") < printed < body.index("<img", printed)
    assert page.count("<script type='text/javascript'>") == 1
    files = {p.name for p in (tmp_path / "figures").iterdir()}
    assert files == {"curve.png", "curve.interactive.json"}
    block = json.loads((tmp_path / "report.json").read_text())["sections"][0]["blocks"][0]
    assert block["payload"] == "curve.png" and block["twin"] == "curve.interactive.json"
    (tmp_path / "report.html").unlink()
    assert "class='screen-only'" in rebuild_report(tmp_path).read_text()
    with pytest.raises(TypeError, match="plotly figure"):
        report.sections[0].add_figure(fig, "x", interactive=fig)
