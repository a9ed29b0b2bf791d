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
            [*cmd, "--dump-dom", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
    console = re.findall(r"CONSOLE[^\]]*\] (.*)", run.stderr)
    return run.stdout, console
