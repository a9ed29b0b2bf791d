"""Open a page in headless Chromium: the DOM after scripts ran, console messages, a screenshot."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
    "--hide-scrollbars",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium is not installed (make test installs it with apt-get)")
    return path


def open_page(
    page: Path, *, screenshot: Path | None = None, size=(1200, 2400)
) -> tuple[str, list[str]]:
    """(DOM after scripts ran, console messages) for ``page``; optionally a PNG screenshot."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}"]
        if screenshot is not None:
            shot = subprocess.run(
                [
                    *cmd,
                    f"--screenshot={screenshot}",
                    f"--window-size={size[0]},{size[1]}",
                    page.resolve().as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert screenshot.exists(), shot.stderr[-2000:]
        run = subprocess.run(
            [*cmd, f"--window-size={size[0]},{size[1]}", "--dump-dom", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    console = re.findall(r"CONSOLE[^\]]*\] (.*)", run.stderr)
    return run.stdout, console


#: Appended to a copy of a page: lists elements wider than the viewport that no scrolling
#: (overflow-x auto/scroll/hidden) ancestor contains, into <pre id="hl-overflow">.
OVERFLOW_PROBE = """<script>window.addEventListener('load', () => setTimeout(() => {
const W = document.documentElement.clientWidth, bad = [];
function clipped(e) { for (let p = e.parentElement; p; p = p.parentElement) {
  const o = getComputedStyle(p).overflowX; if (o !== 'visible') return true; } return false; }
document.querySelectorAll('body *').forEach(e => { const r = e.getBoundingClientRect();
  if (r.width && r.right > W + 1 && !clipped(e)) bad.push(e.tagName + '.' + e.className + ' ' +
    Math.round(r.right)); });
const out = document.createElement('pre'); out.id = 'hl-overflow';
out.textContent = 'width ' + W + '; overflowing: ' + JSON.stringify(bad.slice(0, 20));
document.body.appendChild(out); }, 200));</script>"""


def overflowing(page: Path, size=(1200, 2400)) -> tuple[list[str], list[str]]:
    """(elements overflowing the page width, console messages) of ``page`` in Chromium."""
    import json

    probe = page.with_name(f".probe-{page.name}")
    probe.write_text(page.read_text(encoding="utf-8") + OVERFLOW_PROBE, encoding="utf-8")
    try:
        dom, console = open_page(probe, size=size)
    finally:
        probe.unlink()
    found = re.search(r'<pre id="hl-overflow">width \d+; overflowing: (.*?)</pre>', dom)
    assert found, "the overflow probe did not run"
    return json.loads(found.group(1).replace("&quot;", '"')), console
