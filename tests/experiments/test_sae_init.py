"""The encoder-start experiment runs end to end on its planted data and writes its table."""

import json

from experiments.sae_init import run


def test_fast_run_writes_results_and_table(tmp_path):
    assert run.main(["--fast", "--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    assert {r["scale"] for r in res["runs"]} == {1.0, 0.25}
    for r in res["runs"]:
        assert 0.0 < r["fvu"] < r["fvu_early"] < 1.5  # the long run reconstructs better
        assert 0.0 <= r["dead_fraction"] <= 1.0
    table = (tmp_path / "table.md").read_text()
    assert table.count("\n| 4 |") == 2  # one row per scale at k = 4
