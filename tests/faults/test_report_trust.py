"""``hiddenlens report RUN_DIR`` on a crafted report.json: no script runs, no file outside
the run is read or written (issue 14, item 4)."""

import json
import os
import re

import plotly.graph_objects as go
import pytest

from hiddenlens.report import Report
from hiddenlens.report.rebuild import UntrustedReportError, rebuild_report
from hiddenlens.viz.style import new_figure

from ..report.browser import open_page

SCRIPT = "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
SECRET = "s3cr3t-outside-the-run"


def _run(tmp_path):
    """A genuine run directory, plus a secret PNG-looking file beside it (outside the run)."""
    report = Report("trusted title")
    sec = report.add_section("s", text="see [the dashboard](sae_dashboard.html)")
    fig, ax = new_figure()
    ax.plot([0, 1], [1, 0])
    sec.add_figure(fig, "line")
    sec.add_figure(go.Figure(go.Bar(y=[1, 2])), "bars")
    run = tmp_path / "run"
    report.write(run)
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"\x89PNG\r\n\x1a\n" + SECRET.encode())
    return run, secret


def _edit(run, change):
    data = json.loads((run / "report.json").read_text())
    change(data["sections"][0]["blocks"])
    (run / "report.json").write_text(json.dumps(data))


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def test_html_and_markup_blocks_are_shown_as_text_and_run_nothing(tmp_path):
    run, _ = _run(tmp_path)
    _edit(
        run,
        lambda blocks: blocks.extend(
            [
                {"kind": "html", "payload": SCRIPT, "caption": SCRIPT},
                {"kind": "text", "payload": f"{SCRIPT} [x](javascript:alert(1))"},
                {"kind": "table", "payload": [{SCRIPT: SCRIPT}]},
                {"kind": "metrics", "payload": {SCRIPT: 1.0}},
            ]
        ),
    )
    page = rebuild_report(run)
    text = page.read_text()
    assert "<script>document.title" not in text and "<img src=x" not in text
    assert "href='javascript" not in text and 'href="javascript' not in text
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;" in text
    dom, console = open_page(page)
    assert console == [], console
    assert "<title>trusted title</title>" in dom and "pwned</title>" not in dom
    assert '<img src="x"' not in dom
    # the only resources the page loads are inlined: nothing is fetched from disk
    assert set(re.findall(r'src="([a-z]+):', dom)) <= {"data"}
    assert '<a href="sae_dashboard.html">the dashboard</a>' in dom


@pytest.mark.parametrize(
    "payload",
    ["../../../../etc/hostname", "/etc/hostname", "../secret.png", "sub/line.png", "line.txt"],
)
def test_figure_paths_outside_figures_are_refused(tmp_path, payload):
    run, _ = _run(tmp_path)
    (run / "figures" / "line.txt").write_text("x")
    _edit(run, lambda blocks: blocks.append({"kind": "figure", "payload": payload}))
    with pytest.raises(UntrustedReportError, match=re.escape(repr(payload))):
        rebuild_report(run)


def test_symlinked_figure_and_figures_dir_pointing_outside_are_refused(tmp_path):
    run, secret = _run(tmp_path)
    os.symlink(secret, run / "figures" / "link.png")
    _edit(run, lambda blocks: blocks.append({"kind": "figure", "payload": "link.png"}))
    with pytest.raises(UntrustedReportError, match="not a file directly inside"):
        rebuild_report(run)
    assert SECRET not in (run / "report.html").read_text()  # the old page is untouched
    other, _ = _run(tmp_path / "other")
    (run / "figures").rename(tmp_path / "moved")
    os.symlink(other / "figures", run / "figures")
    with pytest.raises(UntrustedReportError, match="links outside the run directory"):
        rebuild_report(run)


def test_a_png_figure_that_is_not_a_png_is_refused(tmp_path):
    run, _ = _run(tmp_path)
    (run / "figures" / "fake.png").write_text("<script>alert(1)</script>")
    _edit(run, lambda blocks: blocks.append({"kind": "figure", "payload": "fake.png"}))
    with pytest.raises(UntrustedReportError, match="not a PNG"):
        rebuild_report(run)


def test_figure_names_cannot_write_outside_the_run(tmp_path):
    run, _ = _run(tmp_path)

    def rename(blocks):
        blocks[1]["name"] = "../../../escaped"
        blocks[2]["name"] = "/tmp/abs"

    _edit(run, rename)
    before = _files(tmp_path)
    rebuild_report(run)
    new = sorted(set(_files(tmp_path)) - set(before))
    assert new == ["run/figures/_.._.._escaped.png", "run/figures/_tmp_abs.json"], new


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda b: b.append({"kind": "script", "payload": "x"}), "unknown block kind 'script'"),
        (lambda b: b.append({"kind": "text", "payload": {"a": 1}}), r"blocks\[3\].payload"),
        (lambda b: b.append({"kind": "table", "payload": [{"a": [1]}]}), "number or string"),
        (lambda b: b.append("not a block"), "expected a block object"),
    ],
)
def test_malformed_blocks_name_the_field(tmp_path, change, field):
    run, _ = _run(tmp_path)
    _edit(run, change)
    with pytest.raises(UntrustedReportError, match=field):
        rebuild_report(run)
