"""Every ```python block of the README runs as written: in order, as one script, in a fresh
directory (the README says which blocks use MiniLM and which tiny random models)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks() -> list[str]:
    return BLOCK.findall(README.read_text(encoding="utf-8"))


def test_readme_has_the_tour():
    blocks = python_blocks()
    assert len(blocks) >= 11
    assert any("hiddenlens.analyze" in b or "cache_activations" in b for b in blocks)


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(python_blocks()):
        first = block.strip().splitlines()[0]
        try:
            exec(compile(block, f"README.md python block {i} ({first})", "exec"), namespace)
        except Exception as err:  # noqa: BLE001 - name the block that failed
            raise AssertionError(f"README python block {i} ({first!r}) failed: {err!r}") from err
