"""The report and the dashboard as a person sees them: in headless Chromium."""

import numpy as np
from PIL import Image

from hiddenlens.report.dashboard import write_dashboard
from hiddenlens.report.features import feature_cards

from .browser import open_page
from .test_report import _report

XSS = ['<script>document.title="pwned"</script>', "<img src=x onerror=\"document.title='pwned'\">"]


class _Tok:
    def convert_ids_to_tokens(self, ids):
        return [XSS[i % 2] if i % 5 == 0 else f"tok{i}" for i in ids]


def _nonblank(png) -> bool:
    img = np.asarray(Image.open(png).convert("L"), dtype=float)
    return img.std() > 5


def test_report_renders_without_console_errors(tmp_path):
    page = _report().write(tmp_path / "run")
    dom, console = open_page(page, screenshot=tmp_path / "shot.png")
    assert console == [], console
    assert "plotly-graph-div" in dom and "main-svg" in dom  # plotly drew its svg
    assert "<title>demo &lt;script&gt;" in dom and "pwned" not in dom
    assert _nonblank(tmp_path / "shot.png")


def test_dashboard_paginates_and_runs_no_injected_code(tmp_path):
    rng = np.random.default_rng(0)
    acts = np.maximum(rng.normal(size=(2000, 600)) - 2.0, 0).astype(np.float32)
    cards = feature_cards(acts, np.arange(2000), np.arange(2000) // 25, _Tok(), n_top=6)
    path = write_dashboard(cards, tmp_path / "dash.html", title="latents")
    dom, console = open_page(path, screenshot=tmp_path / "dash.png")
    assert console == [], console
    assert dom.count('class="card"') == 40 and "page 1 / 15" in dom  # lazy: one page rendered
    assert "<title>latents</title>" in dom  # no token rewrote the title
    assert '<img src="x"' not in dom and "&lt;img src=x" in dom  # shown as text, not markup
    assert _nonblank(tmp_path / "dash.png")


def test_console_errors_are_detected(tmp_path):
    """Guards the two tests above: a page that logs an error must not look clean."""
    page = tmp_path / "bad.html"
    page.write_text("<html><body><script>console.error('boom'); nope();</script></body></html>")
    _, console = open_page(page)
    assert any("boom" in line for line in console) and any("nope" in line for line in console)


def _wide_report():
    import plotly.graph_objects as go

    from hiddenlens.viz.layers import LayerCurves, plot_layer_curves, plot_layer_curves_interactive

    report = _report()
    sec = report.add_section("wide things", text="a `" + "x" * 400 + "` and " + "y" * 300)
    sec.add_table([{f"column number {j}": 1234.5678 * j for j in range(40)} for _ in range(3)])
    sec.add_metrics({f"sae/fvu/encoder.layer.{i}.very.long.hook.name": 0.1 for i in range(30)})
    curves = LayerCurves([f"layer.{i}" for i in range(12)], {"a": list(range(12))})
    sec.add_figure(
        plot_layer_curves(curves), "curves", interactive=plot_layer_curves_interactive(curves)
    )
    sec.add_figure(go.Figure(go.Heatmap(z=np.eye(30))), "heat")
    report.add_metrics(
        {"sae/fvu/encoder.layer.3": 0.17, "info/binning_bits/l5": 10.0, "info/binning_cap/l5": 10.0}
    )
    return report


def test_report_and_dashboard_fit_the_page_width(tmp_path):
    from .browser import overflowing

    page = _wide_report().write(tmp_path / "run")
    for width in (1200, 700):
        bad, console = overflowing(page, size=(width, 2000))
        assert bad == [] and console == [], (width, bad, console)
    rng = np.random.default_rng(0)
    acts = np.maximum(rng.normal(size=(500, 50)) - 1.5, 0).astype(np.float32)
    cards = feature_cards(acts, np.arange(500), np.arange(500) // 50, _Tok(), n_top=6)
    dash = write_dashboard(cards, tmp_path / "dash.html", title="latents")
    bad, console = overflowing(dash, size=(700, 2000))
    assert bad == [] and console == [], (bad, console)


def test_the_overflow_probe_sees_a_wide_element(tmp_path):
    from .browser import overflowing

    page = tmp_path / "wide.html"
    page.write_text("<html><body><div style='width:3000px'>wide</div></body></html>")
    bad, _ = overflowing(page, size=(800, 600))
    assert bad and bad[0].startswith("DIV")
