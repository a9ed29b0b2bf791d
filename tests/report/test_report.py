import json

import plotly.graph_objects as go
import pytest

from hiddenlens.report import Report
from hiddenlens.report.rebuild import rebuild_report
from hiddenlens.viz.style import new_figure


def _report() -> Report:
    report = Report("demo <script>alert(1)</script>", config={"seed": 0})
    section = report.add_section("Tokens & <b>bold</b>", text="first <i>para</i>\n\n- one\n- two")
    section.add_metrics({"fvu": 0.25, "missing": float("nan"), "nested": {"a": 1}})
    section.add_table([{"token": "<img src=x onerror=alert(1)>", "count": 3}], caption="t")
    fig, ax = new_figure()
    ax.plot([0, 1], [1, 0])
    section.add_figure(fig, "line plot")
    section.add_figure(go.Figure(go.Bar(y=[1, 2])), "bars")
    report.add_metrics({"headline": 1.5})
    return report


def test_write_escapes_text_and_writes_null_for_nan(tmp_path):
    path = _report().write(tmp_path)
    page = path.read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "<img src=x" not in page
    assert page.count("<script type='text/javascript'>") == 1  # plotly.js embedded once
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["metrics"] == {"headline": 1.5, "fvu": 0.25, "missing": None, "nested/a": 1}
    assert metrics["provenance"]["torch"] and metrics["config"] == {"seed": 0}
    assert {p.name for p in (tmp_path / "figures").iterdir()} == {"line_plot.png", "bars.json"}
    assert 'class="missing"' in page or "class='missing'" in page


def test_rebuild_from_saved_results(tmp_path):
    _report().write(tmp_path)
    (tmp_path / "report.html").unlink()
    rebuild_report(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64" in page and "plotly-graph-div" in page
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["fvu"] == 0.25
    with pytest.raises(FileNotFoundError, match="report.json"):
        rebuild_report(tmp_path / "figures")


def test_bad_blocks():
    section = Report("x").add_section("s")
    with pytest.raises(TypeError, match="matplotlib or plotly"):
        section.add_figure("not a figure", "f")
    with pytest.raises(TypeError, match="list of dicts"):
        section.add_table({"a": 1})


def test_layer_metrics_line_up_in_a_grid_and_long_blocks_fold(tmp_path):
    from hiddenlens.report.html import _metrics_block

    metrics = {f"{m}/layer.{i}": i for m in ("nc1", "cdnv") for i in range(3)} | {"fvu": 0.5}
    html = _metrics_block(metrics)
    assert "<th>layer.0</th>" in html and "<td class=''>nc1</td>" in html
    assert "<details>" not in html
    many = {f"m{j}/layer.{i}": j for j in range(20) for i in range(2)}
    assert _metrics_block(many).startswith("<details><summary>All 40 metrics")


def test_empty_report_and_empty_dashboard(tmp_path):
    from hiddenlens.report.dashboard import render_dashboard

    page = Report("nothing yet").write(tmp_path).read_text()
    assert "<h1>nothing yet</h1>" in page
    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"] == {}
    assert '{"cards":[]}' in render_dashboard([], title="no latents")
