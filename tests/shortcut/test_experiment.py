"""The shortcut-foundations experiment runs end to end on tiny settings and writes its report."""

import json

import torch


def test_experiment_tiny_run_writes_report(tmp_path):
    from experiments.shortcut_foundations.run import main

    n = torch.get_num_threads()
    try:
        rc = main(
            [
                "--out", str(tmp_path), "--seeds", "2", "--steps", "4", "--vector-steps", "4",
                "--sizes", "1,2", "--predictivities", "0.75,0.9", "--amplitudes", "1,2",
                "--pop-items", "5000",
            ]
        )  # fmt: skip
    finally:
        torch.set_num_threads(n)
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    flat = json.dumps(metrics)
    for key in ("bias/relu/s2", "bias/cnn/s1", "vector_final_bias/tanh/amp2", "sweep_seconds"):
        assert key in flat
    assert (tmp_path / "report.html").stat().st_size > 1000
    assert len(list((tmp_path / "figures").iterdir())) >= 5
